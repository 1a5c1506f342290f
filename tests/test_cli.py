"""The `eksft` entry point: help lists every command; `eksft losses` runs every loss on a tiny model. CPU, ~10 s."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from eksft.cli import COMMANDS, main


def test_help_lists_commands(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_losses_example_runs_every_method(capsys):
    from eksft.losses import LOSSES

    assert main(["losses", "--steps", "2", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [r["method"] for r in rows] == list(LOSSES)
    eksft_row = next(r for r in rows if r["method"] == "eksft")
    assert 0 < eksft_row["masked_fraction"] < 1
    assert all(abs(r["loss"]) < 100 for r in rows)


def installed_script() -> str:
    """The `eksft` console script that `pip install -e .` (make setup) writes next to this interpreter."""
    beside = Path(sys.executable).parent / "eksft"
    if beside.is_file():
        return str(beside)
    found = shutil.which("eksft")
    if found:
        return found
    pytest.fail(
        f"the `eksft` console script is not installed: neither {beside} nor `eksft` on PATH exists; "
        "`make setup` installs it with `pip install -e .` ([project.scripts] in pyproject.toml)."
    )


def test_console_script_is_installed():
    """Runs the installed entry point itself (not `python -m eksft.cli`), so a broken [project.scripts] line or a
    missing install fails here."""
    script = installed_script()
    out = subprocess.run([script, "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for name in ("demo", "losses", "train", "eval", "drift", "probe", "masks", "rl", "pipeline", "compare", *COMMANDS):
        assert name in out.stdout, name
    out = subprocess.run([script, "losses", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--methods" in out.stdout, out.stderr
