"""Slow (`make test-slow`): `eksft demo --quick` with named methods and two seeds on the real SmolLM2-135M-Instruct:
each named method is its own model and label, the report judges every non-SFT method against SFT with seed-level
intervals. CPU; about 6 minutes on 2 idle cores."""

import json

import pytest

from eksft.cli import main

pytestmark = pytest.mark.slow


def test_named_methods_and_seeds(tmp_path):
    methods = "sft,eksft,eksft[variant=official]"
    assert main(["demo", "--quick", "--seeds", "2", "--methods", methods, "--output-dir", str(tmp_path)]) == 0
    rep = json.loads((tmp_path / "report.json").read_text())
    assert [set(s["eval"]) for s in rep["seeds"]] == [{"base", "sft", "eksft", "eksft[variant=official]"}] * 2
    assert (tmp_path / "seed1" / "eksft__variant-official" / "metrics.jsonl").is_file()
    md = (tmp_path / "report.md").read_text()
    assert "EKSFT (authors' code) keeps entropy" in md and "Student-t over 2 seeds" in md
    assert " ± " in md  # two seeds: mean ± t half-width in every cell
