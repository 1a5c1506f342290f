"""The demo in the paper's data regime (``--data-regime self``): a warm start by SFT, traces sampled from it on new
problems (only verified-correct, deduplicated answers kept), every method continued from it on those traces.

Config and flag checks, the problem stream and the trace filter without a model, then the whole demo once on the
built-in tiny random Llama with --quick sizes. A random model never answers correctly, so that run marks a share of
its samples correct by hand (its numbers mean nothing; every stage and section is exercised)."""

from __future__ import annotations

import json

import pytest

from eksft.cli import build_parser, main
from eksft.data.synthetic import evaluation_keys, problem_key, training_records
from eksft.demo.config import DemoConfig
from eksft.demo.selftrace import TRACE_SEED, keep_traces, new_problems, write_traces


def test_the_option_parses_and_defaults_to_the_given_regime():
    args = build_parser(["demo"]).parse_args(["demo", "--data-regime", "self", "--trace-problems", "12"])
    assert args.data_regime == "self" and args.trace_problems == 12
    assert DemoConfig().data_regime == "given"
    DemoConfig(data_regime="self").validate()
    sub = next(a for a in build_parser(["demo"])._actions if isinstance(getattr(a, "choices", None), dict))
    help_text = " ".join(sub.choices["demo"].format_help().split())
    for flag in ("--data-regime", "--trace-problems", "--trace-samples", "--continue-steps"):
        assert flag in help_text, flag
    assert "the paper's data regime" in help_text


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--data-regime", "mine"], "--data-regime: 'mine' is not a data regime; choose one of ['given', 'self']"),
        (["--data-regime", "self", "--steps", "20,80"], "--steps: the self data regime takes one warm-start length"),
        (["--data-regime", "self", "--trace-samples", "0"], "--trace-samples: must be >= 1, got 0"),
        (["--data-regime", "self", "--continue-steps", "0"], "--continue-steps: must be >= 1, got 0"),
    ],
)
def test_bad_values_give_one_line_naming_the_flag(argv, needle, tmp_path, capsys):
    assert main(["demo", *argv, "--output-dir", str(tmp_path / "demo")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("eksft demo: ") and needle in err and err.count("\n") == 1, err
    assert "DemoConfig" not in err and not (tmp_path / "demo").exists()  # fails before anything is written


def test_new_problems_avoid_training_heldout_and_evaluation_problems():
    cfg = DemoConfig(trace_problems=300)
    exclude = training_records(cfg.task, cfg.train_size + cfg.heldout_solutions)
    # Exclude some problems of the trace stream itself too: they must be skipped, and the count still reached.
    exclude += training_records(cfg.task, 40, seed=TRACE_SEED)[::3]
    problems = new_problems(cfg, exclude)
    keys = [problem_key(p["problem"]) for p in problems]
    assert len(problems) == cfg.trace_problems and len(set(keys)) == len(keys)
    assert not set(keys) & {problem_key(r["problem"]) for r in exclude}
    assert not set(keys) & evaluation_keys()
    assert len({p["id"] for p in problems}) == len(problems)
    assert new_problems(cfg, exclude) == problems  # the same problems on a rerun (resumable sampling)


def sample(pid, index, completion, correct):
    return {
        "problem_id": pid,
        "sample_index": index,
        "problem": f"problem {pid}",
        "gold": "7",
        "completion": completion,
        "correct": correct,
        "num_tokens": 5,
    }


def test_keep_traces_keeps_correct_answers_once_per_problem(tmp_path):
    records = [
        sample("a", 0, "x \\boxed{7}", True),
        sample("a", 1, "x \\boxed{7}", True),  # the same answer again: dropped
        sample("a", 2, "x \\boxed{7}\n", True),  # the same up to surrounding whitespace: dropped
        sample("a", 3, "y \\boxed{8}", False),  # wrong: dropped
        sample("a", 4, "z \\boxed{7}", True),
        sample("b", 0, "x \\boxed{7}", True),  # the same text for another problem: kept
        sample("c", 0, "no answer", False),
        sample("c", 1, "none", None),  # never checked: not kept
    ]
    kept = keep_traces(records)
    assert [(t["problem_id"], t["completion"]) for t in kept] == [
        ("a", "x \\boxed{7}"),
        ("a", "z \\boxed{7}"),
        ("b", "x \\boxed{7}"),
    ]
    path = write_traces(kept, tmp_path / "traces.jsonl")
    from eksft.data.formats import load_records

    data = load_records(str(path))  # what eksft train reads: the user turn and the model's own answer
    assert [r["completion"][0]["content"] for r in data] == [t["completion"] for t in kept]
    assert data[0]["prompt"][-1]["content"].startswith("problem a\n\nPlease reason step by step")


def test_self_regime_end_to_end_on_the_tiny_model(tmp_path, monkeypatch):
    import eksft.demo.selftrace as selftrace

    real = selftrace.sample_answers

    def half_correct(*args, **kwargs):  # the random model solves nothing: pretend every other sample was right
        records = real(*args, **kwargs)
        return [{**r, "correct": r["sample_index"] % 2 == 0} for r in records]

    monkeypatch.setattr(selftrace, "sample_answers", half_correct)
    out = tmp_path / "demo"
    argv = ["demo", "--quick", "--model", "tiny-random-llama", "--data-regime", "self", "--threads", "1"]
    argv += ["--train-size", "8", "--steps", "2", "--eval-problems", "2", "--samples", "2", "--max-new-tokens", "8"]
    argv += ["--heldout-solutions", "2", "--trace-problems", "4", "--trace-samples", "2", "--continue-steps", "2"]
    argv += ["--output-dir", str(out)]
    assert main(argv) == 0
    rep = json.loads((out / "report.json").read_text())
    seed = rep["seeds"][0]
    warm = seed["warm"]["run_dir"]
    assert list(seed["models"]) == ["warm start", "sft", "eksft"] and seed["models"]["warm start"] == warm
    traces = seed["traces"]
    assert traces["problems"] == 4 and traces["samples"] == 8 and traces["correct_samples"] == 4
    assert traces["kept_traces"] == traces["correct_samples"] - traces["duplicates_dropped"] >= 1
    rows = [json.loads(x) for x in (out / "seed0" / "traces" / "traces.jsonl").read_text().splitlines()]
    assert len(rows) == traces["kept_traces"]
    samples = [json.loads(x) for x in (out / "seed0" / "traces" / "samples.jsonl").read_text().splitlines()]
    kept = {(s["problem_id"], s["completion"].strip()) for s in samples if s["sample_index"] % 2 == 0}
    assert {(r["problem_id"], r["messages"][1]["content"].strip()) for r in rows} == kept
    asked = {problem_key(s["problem"]) for s in samples}
    demo = training_records("arithmetic-easy", 8 + 2)  # the run's training records and held-out solutions
    assert not asked & evaluation_keys() and not asked & {problem_key(r["problem"]) for r in demo}
    for label in ("sft", "eksft"):
        run = seed["runs"][label]
        assert run["settings"]["model"] == warm and run["settings"]["train_size"] == traces["kept_traces"]
        logged = [r["step"] for r in map(json.loads, open(f"{run['run_dir']}/metrics.jsonl")) if "loss" in r]
        assert logged == [1, 2]  # --continue-steps
    assert seed["heldout"]["warm start"]["kl"] == pytest.approx(0.0, abs=1e-6)  # KL is to the warm start
    md = (out / "report.md").read_text()
    assert "| metric | warm start | sft | eksft |" in md and "## Self-generated traces" in md
    assert "held-out KL to warm start (nats/token)" in md and "KL to base" not in md
    assert "stays closer to the warm start model (held-out KL to warm start, eksft − sft)" in md
    assert "## Targets `eksft` kept out of cross-entropy (seed 0)" in md  # the mask diagnostic
