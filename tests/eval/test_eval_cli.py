"""``eksft eval`` end to end on a tiny random Llama (built offline) and a 3-problem JSONL file: output files and
their fields, two models side by side, same seed -> same samples, resume after an interruption without resampling
finished problems, k > n refused, exact pass@k bookkeeping with a scripted sampler, intervals and the paired
comparison in the outputs, --protocol presets and the last-number check recorded in run_config.json / samples.

CPU only; about 10-15 s on 2 cores (model build and transformers import dominate).
"""

import csv
import json

import pytest

from eksft import cli
from eksft.eval import runner
from eksft.eval.samples import model_source
from eksft.eval.sampling import HFSampler, Sample, SamplingConfig
from eksft.models.tiny import save_tiny as save_tiny_random_model

pytestmark = pytest.mark.usefixtures("one_thread")

PROBLEMS = [
    {"id": "a", "problem": "What is 2+3?", "answer": "5"},
    {"id": "b", "problem": "What is half of 1?", "answer": "\\frac{1}{2}"},
    {"id": "c", "problem": "What is 7*6?", "answer": "42.0"},
]
SAMPLE_FIELDS = {
    "model",
    "benchmark",
    "problem_id",
    "sample_index",
    "seed",
    "problem",
    "gold",
    "prompt",
    "completion",
    "answer",
    "correct",
    "checks",
    "num_tokens",
    "truncated",
    "mean_entropy",
}
METRICS = {
    "num_problems",
    "n",
    "pass@1",
    "pass@2",
    "pass@4",
    "avg@4",
    "mean_response_tokens",
    "truncated_fraction",
    "no_answer_fraction",
    "distinct_answers_per_problem",
    "mean_token_entropy",
    "distinct_1",
    "distinct_2",
    "distinct_3",
    "pass_at_k_curve",
    "avg@4_last_number",
    "pass_at_k_band",
    "intervals",
    "per_problem",
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    models = [str(save_tiny_random_model(root / f"tiny{i}", seed=i)) for i in (0, 1)]
    data = root / "three.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in PROBLEMS))
    return root, models, str(data)


def eval_args(models, data, out, *extra):
    return [
        "eval",
        *models,
        "--benchmark",
        data,
        "--n",
        "4",
        "--k",
        "1,2,4",
        "--max-new-tokens",
        "6",
        "--batch-size",
        "4",
        "--output-dir",
        str(out),
        "--no-progress",
        *extra,
    ]


def read_samples(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_end_to_end_outputs_and_resume(setup, monkeypatch):
    root, models, data = setup
    full = root / "full"
    assert cli.main(eval_args(models, data, full)) == 0

    for name in ("results.json", "results.csv", "samples.jsonl", "table.md", "run_config.json", "pass_at_k_three.png"):
        assert (full / name).is_file() and (full / name).stat().st_size > 0, name
    results = json.loads((full / "results.json").read_text())
    assert set(results["results"]) == {"three"} and set(results["results"]["three"]) == set(models)
    for summary in results["results"]["three"].values():
        assert set(summary) == METRICS
        assert summary["num_problems"] == 3 and summary["n"] == 4
        assert 0 <= summary["pass@1"] <= summary["pass@2"] <= summary["pass@4"] <= 1
        assert summary["pass@1"] == pytest.approx(summary["avg@4"])
        assert summary["mean_token_entropy"] > 0  # a random model over 259 tokens is far from deterministic
        assert 0 < summary["mean_response_tokens"] <= 6
        for k in ("pass@1", "pass@2", "pass@4", "avg@4", "distinct_2"):
            lo, hi = summary["intervals"][k]
            assert lo <= summary[k] + 1e-9 and summary[k] <= hi + 1e-9
        assert [r["id"] for r in summary["per_problem"]] == ["a", "b", "c"] and summary["per_problem"][0]["n"] == 4
    assert [d["metric"] for d in results["comparisons"]["three"]] == ["pass@1", "pass@2", "pass@4"]
    samples = read_samples(full / "samples.jsonl")
    assert len(samples) == 2 * 3 * 4 and all(set(s) == SAMPLE_FIELDS for s in samples)
    with (full / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and {"benchmark", "model", "pass@4", "avg@4", "distinct_2"} <= set(rows[0])
    table = (full / "table.md").read_text()
    assert all(m in table for m in models) and "pass@4" in table
    assert "In brackets: 95% bootstrap percentile interval over the 3 problems (2000 resamples, seed 0)" in table
    assert "paired comparison with tiny0" in table and "on pass@4:" in table

    # Interrupt: keep problem a, and half of problem b's lines plus a line cut mid-write.
    lines = (full / "samples.jsonl").read_text().splitlines(keepends=True)
    part = root / "part"
    part.mkdir()
    (part / "run_config.json").write_text((full / "run_config.json").read_text())
    m0 = [line for line in lines if json.loads(line)["model"] == models[0]]
    (part / "samples.jsonl").write_text("".join(m0[:4] + m0[4:6]) + m0[6][:30])

    calls = []
    original = HFSampler._generate

    def counting(self, prompts, copies):
        calls.append(prompts)
        return original(self, prompts, copies)

    monkeypatch.setattr(HFSampler, "_generate", counting)
    assert cli.main(eval_args(models[:1], data, part)) == 0
    assert len(calls) == 2 and not any("2+3" in p for c in calls for p in c)  # only b and c were sampled again
    resumed = read_samples(part / "samples.jsonl")
    key = lambda s: (s["problem_id"], s["sample_index"])  # noqa: E731
    first = sorted((s for s in samples if s["model"] == models[0]), key=key)
    assert sorted(resumed, key=key) == first  # same seed -> same samples, whether resumed or not

    calls.clear()  # a finished run resumes to nothing
    assert cli.main(eval_args(models[:1], data, part)) == 0
    assert calls == []


def test_several_problems_per_call_and_resume(setup, monkeypatch):
    """--batch-size 8 with n=4: two problems share a generate call (groups {a, b}, {c}). A run that lost problem b
    samples the group {a, b} again and keeps only b, whose samples equal the uninterrupted run's."""
    root, models, data = setup
    calls = []
    original = HFSampler._generate

    def counting(self, prompts, copies):
        calls.append((len(prompts), copies))
        return original(self, prompts, copies)

    monkeypatch.setattr(HFSampler, "_generate", counting)
    full = root / "grouped"
    assert cli.main(eval_args(models[:1], data, full, "--batch-size", "8")) == 0
    assert calls == [(2, 4), (1, 4)]
    samples = read_samples(full / "samples.jsonl")
    assert len(samples) == 12 and {s["problem_id"] for s in samples} == {"a", "b", "c"}
    per_problem = {}
    for s in samples:
        per_problem.setdefault(s["problem_id"], []).append(s["completion"])
    assert per_problem["a"] != per_problem["b"]  # different prompts in one call get different samples

    part = root / "grouped_part"
    part.mkdir()
    (part / "run_config.json").write_text((full / "run_config.json").read_text())
    kept = [s for s in samples if s["problem_id"] != "b"]
    (part / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in kept))
    calls.clear()
    assert cli.main(eval_args(models[:1], data, part, "--batch-size", "8")) == 0
    assert calls == [(2, 4)]  # group {a, b} again; c is done
    key = lambda s: (s["problem_id"], s["sample_index"])  # noqa: E731
    assert sorted(read_samples(part / "samples.jsonl"), key=key) == sorted(samples, key=key)


def test_k_larger_than_n_is_refused(setup, tmp_path, capsys):
    _, models, data = setup
    argv = ["eval", models[0], "--benchmark", data, "--n", "4", "--k", "1,8", "--output-dir", str(tmp_path)]
    assert cli.main(argv) == 2
    assert capsys.readouterr().err.startswith("eksft eval: --k [8] exceeds --n 4")
    assert not (tmp_path / "samples.jsonl").exists()
    assert cli.main([*argv[:-6], "--protocol", "r1", "--output-dir", str(tmp_path), "--k", "1,128"]) == 2
    assert "--k [128] exceeds --n 64" in capsys.readouterr().err  # the preset's n, the explicit k


def test_resume_with_other_settings_is_refused(setup, tmp_path, capsys):
    _, models, data = setup
    (tmp_path / "run_config.json").write_text(json.dumps({"sampling": {"n": 99}, "seed": 0}))
    assert cli.main(eval_args(models[:1], data, tmp_path)) == 2
    assert "other settings" in capsys.readouterr().err


class ScriptedSampler:
    """Returns fixed completions: problem a right 2/4 times, b 0/4, c 4/4 (as 42 and 42.0)."""

    group_size = 2
    script = {
        "2+3": ["\\boxed{5}", "\\boxed{5.0}", "\\boxed{6}", "no answer"],
        "half": ["\\boxed{1}", "\\boxed{2}", "\\boxed{3}", "\\boxed{4}"],
        "7*6": ["\\boxed{42}", "\\boxed{42.0}", "\\boxed{42}", "\\boxed{42}"],
    }

    def prompt(self, problem):
        return problem

    def sample(self, prompts, seeds):
        out = []
        for p in prompts:
            texts = next(v for k, v in self.script.items() if k in p)
            out.append([Sample(t, len(t), False, 1.0) for t in texts])
        return out


def test_pass_at_k_bookkeeping_with_scripted_samples(setup, tmp_path, monkeypatch):
    _, _, data = setup
    monkeypatch.setattr(runner, "make_sampler", lambda *a, **k: ScriptedSampler())
    monkeypatch.setattr(runner, "choose_backend", lambda name: "hf")
    cfg = runner.EvalConfig(
        models=["scripted"],
        benchmarks=[data],
        output_dir=str(tmp_path),
        ks=[1, 2, 4],
        sampling=SamplingConfig(n=4),
        progress=False,
    )
    s = runner.evaluate(cfg, log=lambda *_: None)["three"]["scripted"]
    assert s["pass@1"] == pytest.approx((2 / 4 + 0 + 1) / 3)
    assert s["pass@2"] == pytest.approx((1 - 1 / 6 + 0 + 1) / 3)  # a: 1 - C(2,2)/C(4,2)
    assert s["pass@4"] == pytest.approx(2 / 3)
    assert s["no_answer_fraction"] == pytest.approx(1 / 12)
    assert s["distinct_answers_per_problem"] == pytest.approx((3 + 4 + 2) / 3)  # "42" and "42.0" print differently
    verdicts = {(r["problem_id"], r["sample_index"]): r["correct"] for r in read_samples(tmp_path / "samples.jsonl")}
    assert verdicts[("a", 1)] and not verdicts[("a", 3)] and verdicts[("c", 1)]


class FormatSampler(ScriptedSampler):
    """Problem a: the right number, never boxed (a format failure); b: boxed and wrong; c: boxed and right."""

    script = {
        "2+3": ["so 5", "it is 5.", "\\boxed{6}", "5"],
        "half": ["\\boxed{1}", "\\boxed{2}", "\\boxed{3}", "\\boxed{4}"],
        "7*6": ["\\boxed{42}", "\\boxed{42.0}", "\\boxed{42}", "\\boxed{42}"],
    }


def test_protocol_preset_and_both_answer_checks(setup, tmp_path, monkeypatch):
    _, _, data = setup
    monkeypatch.setattr(runner, "make_sampler", lambda *a, **k: FormatSampler())

    def argv(out, *extra):
        return [
            "eval",
            "scripted",
            "--benchmark",
            data,
            "--protocol",
            "r1",
            "--n",
            "4",
            "--k",
            "1,4",
            "--output-dir",
            str(out),
            "--no-progress",
            "--backend",
            "hf",
            *extra,
        ]

    assert cli.main(argv(tmp_path)) == 0
    run_config = json.loads((tmp_path / "run_config.json").read_text())
    assert run_config["protocol"] == "r1" and run_config["ks"] == [1, 4]
    sampling = run_config["sampling"]
    assert (sampling["temperature"], sampling["top_p"], sampling["n"], sampling["max_new_tokens"]) == (
        0.6,
        0.95,
        4,
        32768,
    )
    summary = json.loads((tmp_path / "results.json").read_text())["results"]["three"]["scripted"]
    assert summary["avg@4"] == pytest.approx(4 / 12) and summary["avg@4_last_number"] == pytest.approx(7 / 12)
    assert [(r["c"], r["c_last_number"]) for r in summary["per_problem"]] == [(0, 3), (0, 0), (4, 4)]
    checks = [r["checks"] for r in read_samples(tmp_path / "samples.jsonl") if r["problem_id"] == "a"]
    assert [c["last_number"] for c in checks] == [True, True, False, True] and not any(c["last_boxed"] for c in checks)
    # the same samples scored by the last number: the run's own check, and last_boxed as the other one
    out2 = tmp_path / "by_number"
    assert cli.main(argv(out2, "--answer-extraction", "last_number")) == 0
    summary = json.loads((out2 / "results.json").read_text())["results"]["three"]["scripted"]
    assert summary["avg@4"] == pytest.approx(7 / 12) and summary["avg@4_last_boxed"] == pytest.approx(4 / 12)


def test_builtin_model_aliases_resolve(tmp_path, monkeypatch):
    """``eksft eval tiny-random-llama`` loads the built-in model (once written to the cache), not a hub name."""
    monkeypatch.setenv("EKSFT_CACHE", str(tmp_path))
    path = model_source("tiny-random-llama")
    assert path == str(tmp_path / "tiny-random-llama") and (tmp_path / "tiny-random-llama" / "config.json").is_file()
    assert model_source("tiny-random-llama") == path  # reused
    assert model_source("org/some-model") == "org/some-model"
