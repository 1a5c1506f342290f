"""Pipeline configs and the report tables (CPU, no model, ~3 s): the shipped pipeline YAMLs resolve into valid
EKSFTConfig / RLConfig fields for every method; bad keys, methods and k fail naming the key; the report averages
pass@1 / pass@K over benchmarks from eksft eval's results.json, and shows '-' for stages that have not run."""

from __future__ import annotations

import json
import os

import pytest

from eksft.config_io import config_from_values
from eksft.pipeline import load_pipeline_config, pipeline_config_from
from eksft.pipeline.layout import mark_done, stage_dir
from eksft.pipeline.report import write_report
from eksft.pipeline.run import rl_values, sft_values

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CPU = {"bf16": False, "deepspeed": None}


@pytest.mark.parametrize(
    "name",
    [
        "pipeline_demo_cpu.yaml",
        "pipeline_smollm2_cpu.yaml",
        "pipeline_smollm2_rl.yaml",
        "paper/pipeline_qwen3_4b.yaml",
        "paper/pipeline_qwen3_4b_ablations.yaml",
        "paper/pipeline_qwen3_4b_rho_sweep.yaml",
    ],
)
def test_shipped_pipeline_configs_resolve(name, monkeypatch):
    from eksft.rl import RLConfig
    from eksft.train import EKSFTConfig

    monkeypatch.chdir(ROOT)
    pc = load_pipeline_config(os.path.join("configs", name))
    for method in pc.methods:
        sft = config_from_values({**sft_values(pc, method, "x.jsonl"), **CPU}, EKSFTConfig)
        assert sft.loss_type == pc.methods[method]["loss_type"] and sft.seed == pc.seed
        for key, value in pc.methods[method].items():  # named methods' overrides reach the SFT config
            assert getattr(sft, key) == value, (method, key)
        rl = config_from_values({**rl_values(pc, method, "x.jsonl"), **CPU, "use_vllm": False}, RLConfig)
        assert rl.model_name_or_path == stage_dir(pc, method, "sft") and rl.skip_samples == pc.data.sft_samples
    if "ablations" in name:
        assert set(pc.methods) == {
            "sft",
            "eksft",
            "eksft__lambda_entropy-0",
            "eksft__lambda_kl-0",
            "eksft__lambda_entropy-0__lambda_kl-0",
            "random_mask__random_mask_fraction-0.1",
            "global_reg",
        }
    elif "rho_sweep" in name:
        assert [sft_values(pc, m, "x")["rho"] for m in pc.methods] == [0, 0.1, 0.2, 0.3, 0.4]
    elif "paper" in name:
        assert set(pc.methods) == {"sft", "eksft", "dft", "iw_sft", "psft", "sed_sft"}
        assert (pc.eval.n, pc.eval.table_k, pc.eval.max_new_tokens, pc.data.sft_samples) == (32, 32, 8192, 3000)
        assert sft.learning_rate == 1e-5 and sft.max_length == 20000 and rl.learning_rate == 1e-6


def base(**kw):
    values = {"output_dir": "o", "methods": ["sft"], "sft": {}, "rl": {}, "eval": {"benchmarks": ["arithmetic-easy"]}}
    return {**values, **kw}


@pytest.mark.parametrize(
    "values, match",
    [
        (base(methods=["nope"]), r"methods`: 'nope': unknown loss type"),
        (base(methods={"nope": {}}), r"methods\.nope"),
        (base(methods=["eksft[lamda_kl=0]"]), r"did you mean 'lambda_kl'"),
        (base(eval={"benchmarks": ["a"], "n": 4, "ks": [8]}), r"eval\.ks"),
        (base(extra=1), r"unknown key\(s\) \['extra'\]"),
        (base(stages=["train"]), "stages"),
        (base(data={"train_file": "x"}), "sft_samples"),
        (base(output_dir=None), "output_dir"),
    ],
)
def test_bad_pipeline_configs_fail_naming_the_key(values, match):
    with pytest.raises(ValueError, match=match):
        pipeline_config_from(values)


def test_table_k_is_32_or_the_largest_available():
    assert pipeline_config_from(base(eval={"benchmarks": ["a"], "n": 64, "ks": [1, 32, 64]})).eval.table_k == 32
    assert pipeline_config_from(base(eval={"benchmarks": ["a"], "n": 8})).eval.ks == [1, 8]


def test_report_averages_over_benchmarks(tmp_path):
    pc = pipeline_config_from(
        base(output_dir=str(tmp_path), methods=["sft", "eksft"], eval={"benchmarks": ["b1", "b2"], "n": 4})
    )
    # Hand-written eksft eval results for the sft method after SFT; nothing else has run.
    folder = stage_dir(pc, "sft", "sft_eval")
    os.makedirs(folder)
    curve = {"1": 0.0, "2": 0.0, "3": 0.0, "4": 0.0}
    results = {
        "b1": {"m": {"pass@1": 0.5, "pass@4": 0.75, "num_problems": 2, "pass_at_k_curve": curve}},
        "b2": {"m": {"pass@1": 0.25, "pass@4": 0.5, "num_problems": 2, "pass_at_k_curve": curve}},
    }
    json.dump({"config": {}, "results": results}, open(os.path.join(folder, "results.json"), "w"))
    report = write_report(pc, str(tmp_path / "report"))
    assert report["stages"]["sft_eval"] == {}  # results without DONE.json are not trusted
    mark_done(folder, {"seconds": 1.0})
    report = write_report(pc, str(tmp_path / "report"))
    assert report["stages"]["sft_eval"]["sft"]["average"] == {"pass@1": 0.375, "pass@4": 0.625}
    md = open(tmp_path / "report" / "report.md").read()
    assert "| sft | 50.0 | 25.0 | 75.0 | 50.0 | 37.5 | 62.5 |" in md
    assert "| eksft | - | - | - | - | - | - |" in md


def test_report_cells_carry_intervals_and_methods_are_compared_paired(tmp_path):
    """With eksft eval's intervals and per-problem counts, cells show '[low, high]' and each method gets a paired
    sentence against sft; a method right on every problem against one right on none is 'higher'."""
    pc = pipeline_config_from(
        base(output_dir=str(tmp_path), methods=["sft", "eksft"], eval={"benchmarks": ["b1"], "n": 4})
    )
    for method, c in (("sft", 0), ("eksft", 4)):
        folder = stage_dir(pc, method, "sft_eval")
        os.makedirs(folder)
        summary = {
            "pass@1": c / 4,
            "pass@4": float(c > 0),
            "num_problems": 3,
            "n": 4,
            "pass_at_k_curve": {str(k): c / 4 for k in range(1, 5)},
            "intervals": {"method": "bootstrap", "pass@1": [c / 4, c / 4], "pass@4": [c / 4, c / 4]},
            "per_problem": [{"id": str(i), "n": 4, "c": c} for i in range(3)],
        }
        json.dump({"config": {}, "results": {"b1": {"m": summary}}}, open(os.path.join(folder, "results.json"), "w"))
        mark_done(folder, {"seconds": 1.0})
    report = write_report(pc, str(tmp_path / "report"))
    md = open(tmp_path / "report" / "report.md").read()
    assert "| eksft | 100.0 [100.0, 100.0] | 100.0 [100.0, 100.0] |" in md
    (first, *_), records = report["comparisons"]["sft_eval"], report["comparisons"]["sft_eval"]
    assert [r["metric"] for r in records] == ["pass@1", "pass@4"]
    assert first["low"] == first["high"] == first["difference"] == 1.0
    assert "b1: eksft − sft on pass@1: +100.0 points" in md and "eksft higher" in md


def test_results_on_other_problems_are_not_compared(tmp_path):
    """Both paired comparisons (method vs sft, and a method after RL vs after SFT) refuse results on different
    problems with one sentence each, and record nothing."""
    from eksft.pipeline.report import comparisons, rl_effects

    pc = pipeline_config_from(base(output_dir=str(tmp_path), methods=["sft", "eksft"], eval={"benchmarks": ["b1"]}))

    def summary(ids):
        return {"per_problem": [{"id": i, "n": 4, "c": 2} for i in ids]}

    results = {"sft": {"b1": summary("abc")}, "eksft": {"b1": summary("xyz")}}
    records, text = comparisons(pc, results)
    assert records == [] and len(text) == 1 and text[0].startswith("b1: eksft vs sft not compared (")
    records, text = rl_effects(pc, {"eksft": {"b1": summary("abc")}}, {"eksft": {"b1": summary("xyz")}})
    assert records == [] and len(text) == 1 and text[0].startswith("b1: eksft after RL vs after SFT not compared (")
