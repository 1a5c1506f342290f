"""The demo's statistics and report wording, on hand-made summaries (no training). CPU, < 2 s."""

import math

import pytest

from eksft.demo.config import DemoConfig, with_quick
from eksft.demo.report import results_table, sentences, to_html, to_markdown
from eksft.demo.stats import compare, fmt, mean_ci


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


def seed_record(seed, sft_p1, eksft_p1):
    def ev(p1):
        return {"pass@1": p1, "pass@4": min(1.0, 2 * p1), "n": 4, "no_answer_fraction": 0.1, "truncated_fraction": 0.0,
                "mean_response_tokens": 30.0, "distinct_answers_per_problem": 1.5, "mean_token_entropy": 0.4,
                "distinct_2": 0.5, "pass_at_k_curve": {"1": p1, "2": p1, "4": min(1.0, 2 * p1)}}  # fmt: skip

    return {"seed": seed, "models": {"base": "b", "sft": "s", "eksft": "e"},
            "runs": {"sft": {"train_seconds": 60.0, "run_dir": "x"}, "eksft": {"train_seconds": 75.0, "run_dir": "y"}},
            "eval": {"base": ev(0.0), "sft": ev(sft_p1), "eksft": ev(eksft_p1)},
            "heldout": {m: {"nll": 1.0, "entropy": 0.5, "kl": 0.0 if m == "base" else 0.2} for m in ("base", "sft", "eksft")},
            "drift": {"sft": {"0.001": 0.4}, "eksft": {"0.001": 0.3}}}  # fmt: skip


def summary(pairs):
    return {"config": {"samples": 4}, "seeds": [seed_record(i, a, b) for i, (a, b) in enumerate(pairs)]}


def test_report_says_when_eksft_is_worse():
    s = summary([(0.40, 0.20), (0.42, 0.21), (0.41, 0.19)])
    text = "\n".join(sentences(s))
    assert "pass@1: eksft 0.200 ± " in text and "eksft is worse than SFT here" in text
    assert "3 seeds" in text
    header, rows = results_table(s)
    assert header == ["metric", "base", "sft", "eksft"]
    assert rows[0][0] == "pass@1" and rows[1][0] == "pass@4"


def test_report_says_when_no_difference():
    s = summary([(0.3, 0.5), (0.5, 0.3), (0.4, 0.4)])
    assert any("no measurable difference between eksft and SFT" in x and x.startswith("pass@1") for x in sentences(s))


def test_single_seed_warns_about_noise():
    assert "One seed" in sentences(summary([(0.3, 0.35)]))[-1]


def test_render_escapes_and_inlines(tmp_path):
    png = tmp_path / "a.png"
    png.write_bytes(b"\x89PNG fake")
    bl = [("h1", "t <x>"), ("table", ["m", "v"], [["a", "1"]]), ("img", png, "cap"), ("ul", ["one"])]
    page = to_html(bl)
    assert "t &lt;x&gt;" in page and "data:image/png;base64," in page and "src='a.png'" not in page
    assert "| a | 1 |" in to_markdown(bl, tmp_path)


def test_quick_preset_keeps_explicit_fields():
    cfg = with_quick(DemoConfig(quick=True, steps=5), {"quick", "steps"})
    assert cfg.steps == 5 and cfg.train_size < DemoConfig().train_size
    assert DemoConfig(samples=4).ks == [1, 2, 4] and DemoConfig(samples=6).ks == [1, 2, 4, 6]


@pytest.mark.parametrize("kw,needle", [({"methods": ["sft", "nope"]}, "--methods"), ({"task": "x"}, "--task"),
                                       ({"samples": 0}, "--samples")])  # fmt: skip
def test_config_errors_name_the_flag(kw, needle):
    with pytest.raises(ValueError, match=needle):
        DemoConfig(**kw).validate()


def test_rerun_with_other_training_settings_is_refused(tmp_path):
    """A finished run's marker records its settings: the same settings skip training, others are refused (the
    report would otherwise show old models under the new settings)."""
    import json

    from eksft.demo.run import train_method

    cfg = DemoConfig(output_dir=str(tmp_path))
    run_dir = tmp_path / "seed0" / "eksft"
    run_dir.mkdir(parents=True)
    settings = {"model": "m", "task": cfg.task, "train_size": cfg.train_size, "steps": cfg.steps,
                "batch_size": cfg.batch_size, "learning_rate": cfg.learning_rate, "rho": cfg.rho,
                "lambda_entropy": cfg.lambda_entropy, "lambda_kl": cfg.lambda_kl}  # fmt: skip
    record = {"method": "eksft", "seed": 0, "run_dir": str(run_dir), "train_seconds": 1.0, "settings": settings}
    (run_dir / "demo_train.json").write_text(json.dumps(record))
    assert train_method(cfg, "m", "eksft", 0, run_dir, tmp_path / "x.jsonl", log=lambda *_: None) == record
    other = DemoConfig(output_dir=str(tmp_path), learning_rate=5e-5)
    with pytest.raises(ValueError, match=r"other settings \(\['learning_rate'\]"):
        train_method(other, "m", "eksft", 0, run_dir, tmp_path / "x.jsonl", log=lambda *_: None)
