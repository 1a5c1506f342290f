"""``eksft --help`` builds only the top-level parser: no command's flags, so no config class, torch or TRL is
imported (cli.py docstring); a command's own ``--help`` still lists its flags. CPU, about a second."""

import subprocess
import sys


def test_top_level_help_imports_no_torch():
    code = (
        "import sys; from eksft import cli; p = cli.build_parser(['--help']); "
        "assert 'torch' not in sys.modules and 'trl' not in sys.modules, sorted(sys.modules); "
        "print(p.format_help())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for command in ("demo", "train", "eval", "compare", "losses"):
        assert command in out.stdout


def test_command_help_still_lists_its_flags(capsys):
    from eksft import cli

    parser = cli.build_parser(["losses", "--help"])
    sub = next(a for a in parser._actions if a.dest == "command").choices
    assert "--steps" in sub["losses"].format_help() and "--steps" not in sub["train"].format_help()


def test_no_module_imports_the_cpu_launcher():
    """``eksft.cpu_launch`` changes accelerate's state for CPU checks of ZeRO-3 / FSDP2 launches; a normal run must
    never import it (docs/training.md, "Checking a launch on CPU")."""
    import pathlib
    import re

    import eksft

    package = pathlib.Path(eksft.__file__).parent
    imports = re.compile(r"^\s*(from\s+(eksft|\.)\S*\s+import\s+.*\bcpu_launch\b|(from|import)\s+\S*cpu_launch)", re.M)
    users = [p for p in package.rglob("*.py") if p.name != "cpu_launch.py" and imports.search(p.read_text())]
    assert not users, users
