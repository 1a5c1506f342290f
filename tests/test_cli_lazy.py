"""``eksft --help`` builds only the top-level parser: no command's flags, so no config class, torch or TRL is
imported (cli.py docstring); a command's own ``--help`` still lists its flags. CPU, about a second."""

import subprocess
import sys

import pytest


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


@pytest.mark.parametrize(("args", "code"), [(["--help"], 0), (["no-such-command"], 2)])
def test_cpu_launcher_runs_exit_handlers_then_exits_with_the_commands_code(tmp_path, args, code):
    """``python -m eksft.cpu_launch`` ends with ``os._exit`` (gloo's C++ teardown aborted a finished rank once):
    Python's exit handlers still run first and the command's exit code is kept."""
    marker = tmp_path / "atexit_ran"
    teardown = tmp_path / "teardown_ran"  # written by a finaliser only the interpreter's own teardown runs
    script = (
        "import atexit, os, runpy, sys\n"
        f"atexit.register(lambda: open({str(marker)!r}, 'w').write('ok'))\n"
        "class Finalised:\n"  # bound os functions: the teardown clears module globals before this runs
        "    def __del__(self, _open=os.open, _close=os.close, _flags=os.O_CREAT | os.O_WRONLY):\n"
        f"        _close(_open({str(teardown)!r}, _flags))\n"
        "probe = Finalised()\n"
        f"sys.argv = ['eksft.cpu_launch', *{args!r}]\n"
        "runpy.run_module('eksft.cpu_launch', run_name='__main__')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == code, done.stderr[-2000:]
    assert marker.read_text() == "ok"
    assert not teardown.exists()  # os._exit: the teardown (where gloo's threads aborted) never ran
