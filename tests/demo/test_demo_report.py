"""The demo's statistics and report wording, on hand-made summaries (no training). CPU, < 2 s."""

import math

import pytest

from eksft.demo.config import DemoConfig, with_quick
from eksft.demo.render import inline, to_html, to_markdown
from eksft.demo.report import sentences
from eksft.demo.stats import compare, fmt, mean_ci
from eksft.demo.tables import results_table


def test_mean_ci_matches_the_t_formula():
    m, h = mean_ci([1.0, 2.0, 3.0])
    assert m == 2.0
    assert h == pytest.approx(4.303 * 1.0 / math.sqrt(3))  # t_{0.975, 2} * sd / sqrt(n), sd = 1
    assert mean_ci([5.0]) == (5.0, None)
    assert fmt([0.25]) == "0.250" and fmt([1.0, 2.0, 3.0]) == "2.000 ± 2.484"


def test_compare_uses_interval_overlap():
    assert compare([0.5, 0.52, 0.51], [0.1, 0.11, 0.12]) == "higher"
    assert compare([0.5, 0.1, 0.9], [0.45, 0.5, 0.4]) == "indistinguishable"
    assert compare([0.2], [0.3]) == "lower"


def seed_record(seed, sft_p1, eksft_p1, problems=20, n=4):
    """A hand-made seed: per-problem (n, c) with round(p1 * n) correct on every problem, held-out statistics where
    EKSFT keeps more entropy and less KL than SFT on every solution."""

    def ev(p1):
        c = round(p1 * n)
        return {
            "pass@1": c / n,
            "pass@4": float(c > 0),
            "n": n,
            "no_answer_fraction": 0.1,
            "truncated_fraction": 0.0,
            "mean_response_tokens": 30.0,
            "distinct_answers_per_problem": 1.5,
            "mean_token_entropy": 0.4,
            "distinct_2": 0.5,
            "pass_at_k_curve": {"1": c / n, "2": c / n, "4": float(c > 0)},
            "intervals": {"pass@1": [c / n - 0.1, c / n + 0.1]},
            "per_problem": [{"id": str(i), "n": n, "c": c} for i in range(problems)],
        }

    def held(entropy, kl):
        return {
            "nll": 1.0,
            "entropy": entropy,
            "kl": kl,
            "per_solution": {
                "nll": [1.0] * 5,
                "entropy": [entropy + 0.01 * i for i in range(5)],
                "kl": [kl + 0.01 * i for i in range(5)],
                "tokens": [10, 20, 30, 40, 50],
            },
        }

    return {
        "seed": seed,
        "models": {"base": "b", "sft": "s", "eksft": "e"},
        "runs": {"sft": {"train_seconds": 60.0, "run_dir": "x"}, "eksft": {"train_seconds": 75.0, "run_dir": "y"}},
        "eval": {"base": ev(0.0), "sft": ev(sft_p1), "eksft": ev(eksft_p1)},
        "heldout": {"base": held(0.5, 0.0), "sft": held(0.1, 0.4), "eksft": held(0.3 + 0.01 * seed, 0.2)},
        "drift": {"sft": {"0.001": 0.4}, "eksft": {"0.001": 0.3 + 0.01 * seed}},
    }


def summary(pairs):
    return {"config": {"samples": 4}, "seeds": [seed_record(i, a, b) for i, (a, b) in enumerate(pairs)]}


def test_claims_over_seeds_support_refute_or_cannot_tell():
    s = summary([(0.50, 0.25), (0.75, 0.50), (0.50, 0.25)])  # EKSFT 25 points lower in every seed
    text = "\n".join(sentences(s))
    assert "EKSFT (paper equations, published λ) keeps entropy" in text
    assert "keeps entropy (held-out entropy, eksft − sft): +0.210 nats/token" in text
    line = next(x for x in sentences(s) if "matches or beats pass@1" in x)
    assert line.endswith("refuted.") and "Student-t over 3 seeds" in line
    assert next(x for x in sentences(s) if "stays closer" in x).endswith("supported.")
    assert next(x for x in sentences(s) if "drifts less" in x).endswith("supported.")
    header, rows = results_table(s)
    assert header == ["metric", "base", "sft", "eksft"]
    assert rows[0][0] == "pass@1" and rows[1][0] == "pass@4" and " ± " in rows[0][2]


def test_claim_cannot_tell_when_the_interval_contains_zero():
    s = summary([(0.25, 0.5), (0.5, 0.25), (0.5, 0.5)])
    line = next(x for x in sentences(s) if "matches or beats pass@1" in x)
    assert "cannot tell (the interval contains 0)" in line


def test_single_seed_uses_bootstrap_intervals():
    s = summary([(0.5, 0.25)])
    lines = sentences(s)
    line = next(x for x in lines if "matches or beats pass@1" in x)
    assert "paired bootstrap over problems" in line and line.endswith("refuted.")  # every problem: 2/4 vs 1/4
    assert "no interval" in next(x for x in lines if "drifts less" in x)
    assert "paired bootstrap over held-out solutions" in next(x for x in lines if "keeps entropy" in x)
    header, rows = results_table(s)
    assert rows[0][2] == "0.500 [0.400, 0.600]"  # the eval's own bootstrap interval
    entropy_row = next(r for r in rows if r[0].startswith("held-out entropy"))
    assert entropy_row[2].startswith("0.100 [")


def test_weighted_intervals_brute_force():
    """The token-weighted bootstrap equals resampling by hand with the same counts."""
    import numpy as np

    from eksft.demo.claims import weighted_interval, weighted_paired
    from eksft.eval.intervals import resample_counts

    v, w = [0.1, 0.5, 0.2, 0.9], [1, 3, 2, 4]
    r = resample_counts(4, 2000, 0)
    means = [sum(r[i, j] * v[j] * w[j] for j in range(4)) / sum(r[i, j] * w[j] for j in range(4)) for i in range(2000)]
    assert weighted_interval(v, w) == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])))
    d, lo, hi = weighted_paired(v, v, w)
    assert d == 0 and lo == 0 and hi == 0


def test_render_escapes_and_inlines(tmp_path):
    png = tmp_path / "a.png"
    png.write_bytes(b"\x89PNG fake")
    bl = [("h1", "t <x>"), ("table", ["m", "v"], [["a", "1"]]), ("img", png, "cap"), ("ul", ["one"])]
    page = to_html(bl)
    assert "t &lt;x&gt;" in page and "data:image/png;base64," in page and "src='a.png'" not in page
    assert "| a | 1 |" in to_markdown(bl, tmp_path)
    assert inline("use `eksft demo` <now>") == "use <code>eksft demo</code> &lt;now&gt;"


def test_quick_preset_keeps_explicit_fields():
    cfg = with_quick(DemoConfig(quick=True, steps=5), {"quick", "steps"})
    assert cfg.steps == 5 and cfg.train_size < DemoConfig().train_size
    assert DemoConfig(samples=4).ks == [1, 2, 4] and DemoConfig(samples=6).ks == [1, 2, 4, 6]


@pytest.mark.parametrize(
    "kw,needle",
    [
        ({"methods": ["sft", "nope"]}, r"DemoConfig\.methods: 'nope'"),
        ({"task": "x"}, r"DemoConfig\.task: 'x' is not a task; choose one of \["),
        ({"methods": ["eksft[lamda_kl=0]"]}, "did you mean 'lambda_kl'"),
        ({"samples": 0}, r"DemoConfig\.samples: must be >= 1, got 0"),
    ],
)
def test_config_errors_name_the_field(kw, needle):
    with pytest.raises(ValueError, match=needle):
        DemoConfig(**kw).validate()


@pytest.mark.parametrize(
    "kw,argv,names",
    [
        ({"task": "x"}, ["--task", "x"], {"DemoConfig.task": "--task"}),
        (
            {"steps": 500, "batch_size": 8},
            ["--steps", "500", "--batch-size", "8"],
            {
                "DemoConfig.steps": "--steps",
                "DemoConfig.batch_size": "--batch-size",
                "DemoConfig.train_size": "--train-size",
            },
        ),
    ],
)
def test_config_error_names_the_field_in_python_and_the_flag_on_the_command_line(kw, argv, names, tmp_path, capsys):
    from eksft import cli

    with pytest.raises(ValueError) as python_error:
        DemoConfig(**kw).validate()
    message = str(python_error.value)
    assert all(name in message for name in names), message  # Python callers read the config's own field names
    assert cli.main(["demo", *argv, "--output-dir", str(tmp_path / "demo")]) == 2  # fails before any model loads
    err = capsys.readouterr().err
    for name, flag in names.items():
        message = message.replace(name, flag)
    assert err == f"eksft demo: {message}\n" and "DemoConfig" not in err  # the same words, the command's flags
    assert not (tmp_path / "demo").exists()


def test_rerun_with_other_training_settings_is_refused(tmp_path):
    """A finished run's marker records its settings: the same settings skip training, others are refused (the
    report would otherwise show old models under the new settings)."""
    import json

    from eksft.demo.training import train_method
    from eksft.methods import Method

    cfg = DemoConfig(output_dir=str(tmp_path))
    run_dir = tmp_path / "seed0" / "eksft"
    run_dir.mkdir(parents=True)
    settings = {
        "model": "m",
        "task": cfg.task,
        "train_size": cfg.train_size,
        "steps": cfg.steps,
        "batch_size": cfg.batch_size,
        "learning_rate": cfg.learning_rate,
        "rho": cfg.rho,
        "lambda_entropy": cfg.lambda_entropy,
        "lambda_kl": cfg.lambda_kl,
        "loss_type": "eksft",
    }
    record = {"method": "eksft", "seed": 0, "run_dir": str(run_dir), "train_seconds": 1.0, "settings": settings}
    (run_dir / "demo_train.json").write_text(json.dumps(record))
    log = lambda *_: None  # noqa: E731
    assert train_method(cfg, "m", Method("eksft"), 0, run_dir, tmp_path / "x.jsonl", log=log) == {
        **record,
        "resumed": True,
    }
    other = DemoConfig(output_dir=str(tmp_path), learning_rate=5e-5)
    with pytest.raises(ValueError, match=r"other settings \(\['learning_rate'\]"):
        train_method(other, "m", Method("eksft"), 0, run_dir, tmp_path / "x.jsonl", log=log)
    official = Method("eksft", (("variant", "official"),))  # same folder, other objective: refused too
    with pytest.raises(ValueError, match=r"other settings \(\['variant'\]"):
        train_method(cfg, "m", official, 0, run_dir, tmp_path / "x.jsonl", log=log)
