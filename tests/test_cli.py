"""The `eksft` entry point: help lists every command; `eksft losses` runs every loss on a tiny model. CPU, ~10 s."""

import json
import subprocess
import sys

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


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "eksft.cli", "losses", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--methods" in out.stdout
