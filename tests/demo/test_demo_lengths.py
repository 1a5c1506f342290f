"""SFT length as a demo axis: ``--steps 20,80`` trains each method once per length (labels ``method[max_steps=N]``)
and the report compares them ("Against SFT length"; each length's methods judged against that length's SFT).
Config and flag checks without training, then the whole demo once on the built-in tiny random Llama with --quick
sizes (its numbers mean nothing; every stage and table is exercised). About 30 s on one idle core."""

from __future__ import annotations

import argparse
import json

import pytest

from eksft.cli import main
from eksft.commands.demo import step_list
from eksft.demo.config import DemoConfig
from eksft.methods import parse_method


def test_several_lengths_expand_every_method_length_major():
    cfg = DemoConfig(steps=[20, 80])
    assert [m.label for m in cfg.expanded_methods()] == [
        "sft[max_steps=20]",
        "eksft[max_steps=20]",
        "sft[max_steps=80]",
        "eksft[max_steps=80]",
    ]
    assert [m.label for m in DemoConfig(steps=20).expanded_methods()] == ["sft", "eksft"]
    assert DemoConfig(steps=[20, 80]).lengths == [20, 80] and DemoConfig().lengths == [20]


def test_a_length_as_a_named_method():
    m = parse_method("eksft[variant=official,max_steps=80]")
    assert m.steps == 80 and m.slug == "eksft__variant-official__max_steps-80"
    assert m.title == "EKSFT (authors' code) after 80 steps" and m.with_steps(None).label == "eksft[variant=official]"
    assert parse_method("sft[max_steps=1]").title == "SFT after 1 step"


@pytest.mark.parametrize(
    "kw,needle",
    [
        ({"steps": [20, 20]}, r"DemoConfig\.steps: each length must be >= 1 and given once"),
        ({"steps": [0, 20]}, r"DemoConfig\.steps: each length must be >= 1"),
        ({"steps": [20, 500]}, r"DemoConfig\.steps 500 x DemoConfig\.batch_size 8 is over 20 epochs"),
        ({"steps": [20, 80], "methods": ["sft", "eksft[max_steps=40]"]}, r"give the lengths in one place"),
    ],
)
def test_length_errors_name_the_field(kw, needle):
    with pytest.raises(ValueError, match=needle):
        DemoConfig(**kw).validate()


def test_the_flag_takes_one_or_several_lengths():
    assert step_list("20") == 20 and step_list("20,80") == [20, 80] and step_list(" 20, 80 ") == [20, 80]
    with pytest.raises(argparse.ArgumentTypeError, match="whole numbers of steps"):
        step_list("20,x")


def test_demo_with_two_lengths_on_the_tiny_model(tmp_path):
    out = tmp_path / "demo"
    argv = ["demo", "--quick", "--model", "tiny-random-llama", "--steps", "1,2", "--threads", "1"]
    argv += ["--train-size", "8", "--eval-problems", "2", "--samples", "2", "--max-new-tokens", "8"]
    argv += ["--heldout-solutions", "2", "--output-dir", str(out)]
    assert main(argv) == 0
    rep = json.loads((out / "report.json").read_text())
    labels = ["sft[max_steps=1]", "eksft[max_steps=1]", "sft[max_steps=2]", "eksft[max_steps=2]"]
    assert list(rep["seeds"][0]["runs"]) == labels
    for label in labels:
        run = rep["seeds"][0]["runs"][label]
        steps = parse_method(label).steps
        assert run["settings"]["steps"] == steps and "max_steps" not in run["settings"]
        logged = [r["step"] for r in map(json.loads, open(f"{run['run_dir']}/metrics.jsonl")) if "loss" in r]
        assert logged == list(range(1, steps + 1))  # each length is its own model, trained that long
    md = (out / "report.md").read_text()
    assert "## Against SFT length" in md and "| method | metric | 1 steps | 2 steps |" in md
    for method in ("sft", "eksft"):
        for metric in ("pass@1", "pass@2", "held-out entropy", "held-out KL to base"):
            assert f"| {method} | {metric} | " in md, (method, metric)
    assert "eksft[max_steps=2] − sft[max_steps=2]" in md and "eksft[max_steps=1] − sft[max_steps=1]" in md
    assert "eksft[max_steps=2] − sft[max_steps=1]" not in md  # each length against its own SFT
    assert "1 and 2 AdamW steps" in md
    assert "## Targets `eksft__max_steps-2` kept out of cross-entropy (seed 0)" in md  # the persistent-mask listing


def test_first_seed_and_eval_offset_are_validated_and_reach_the_evaluation(monkeypatch, tmp_path):
    """A confirmation run: --first-seed 3 starts at seed 3 (its folder, its training seed, its sampling seed) and
    --eval-offset 64 --eval-problems 16 evaluates problems 64-79. Training and sampling are replaced by recorders."""
    import eksft.demo.run as demo_run
    import eksft.eval.runner as runner

    for bad in ({"first_seed": -1}, {"eval_offset": -2}):
        with pytest.raises(ValueError, match=f"DemoConfig.{next(iter(bad))}: must be >= 0, got -"):
            DemoConfig(**bad).validate()
    trained, evaluated = [], []

    def fake_train(cfg, base, method, seed, run_dir, *args, **kwargs):
        trained.append((method.label, seed, run_dir.parent.name))
        return {"run_dir": str(run_dir)}

    def fake_evaluate(ecfg, log=None):
        evaluated.append(ecfg)
        raise SystemExit  # stop the demo here: the evaluation's settings are what this test checks

    monkeypatch.setattr(demo_run, "train_method", fake_train)
    monkeypatch.setattr(runner, "evaluate", fake_evaluate)
    monkeypatch.setattr("eksft.models.smollm.resolve_model_path", lambda name: name)
    cfg = DemoConfig(output_dir=str(tmp_path / "d"), first_seed=3, seeds=2, eval_offset=64, eval_problems=16)
    with pytest.raises(SystemExit):
        demo_run.run_demo(cfg, log=lambda *_: None)
    assert trained == [("sft", 3, "seed3"), ("eksft", 3, "seed3")]
    (ecfg,) = evaluated
    assert (ecfg.offset, ecfg.limit, ecfg.seed) == (64, 16, 3)
