"""``eksft pipeline`` end to end on the built-in tiny random Llama (CPU, 1 thread, ~30 s): two methods go through
SFT -> eval -> DAPO -> eval on one seeded data split, the report has both tables (after SFT, after RL) with a row per
method, JSON and pass@k plots; a second run skips every finished stage, and a stage without its DONE.json marker
(a crash mid-stage) runs again."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from eksft.cli import main
from eksft.pipeline import pipeline_config_from, run_pipeline
from eksft.pipeline import run as pipeline_run

STAGES = ("sft", "sft_eval", "rl", "rl_eval")


def tiny_pipeline(out: str) -> dict:
    return {
        "output_dir": out,
        "seed": 3,
        "methods": {"sft": {}, "eksft": {"rho": 0.2}},
        "data": {"train_file": "synthetic:arithmetic-easy", "sft_samples": 8, "rl_samples": 4},
        "sft": {
            "model_name_or_path": "tiny-random-llama",
            "max_steps": 2,
            "per_device_train_batch_size": 4,
            "max_length": 160,
            "learning_rate": 3e-3,
            "logging_steps": 1,
            "save_strategy": "no",
            "report_to": [],
            "gradient_checkpointing": False,
            "disable_tqdm": True,
        },
        "rl": {
            "max_steps": 2,
            "num_generations": 2,
            "prompts_per_generation": 2,
            "per_device_train_batch_size": 4,
            "max_generation_batches": 2,  # dynamic sampling: the tiny model rarely varies; keep refills few
            "max_completion_length": 12,
            "overlong_buffer_len": 4,
            "learning_rate": 1e-3,
            "logging_steps": 1,
            "save_strategy": "no",
            "report_to": [],
            "gradient_checkpointing": False,
            "disable_tqdm": True,
        },
        "eval": {"benchmarks": ["arithmetic-easy"], "limit": 2, "n": 2, "max_new_tokens": 12, "batch_size": 2},
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One full pipeline run, shared by the tests below (the expensive part)."""
    out = str(tmp_path_factory.mktemp("pipe") / "run")
    logs = []
    report = run_pipeline(pipeline_config_from(tiny_pipeline(out)), log=logs.append)
    return out, report, logs


def test_every_stage_runs_and_is_marked(finished):
    out, _, logs = finished
    for method in ("sft", "eksft"):
        for stage in STAGES:
            folder = os.path.join(out, method, stage)
            info = json.load(open(os.path.join(folder, "DONE.json")))
            assert (info["method"], info["stage"]) == (method, stage) and info["seconds"] >= 0
        assert os.path.exists(os.path.join(out, method, "sft", "model.safetensors"))
        assert os.path.exists(os.path.join(out, method, "rl", "model.safetensors"))
        assert any("reward" in json.loads(line) for line in open(os.path.join(out, method, "rl", "metrics.jsonl")))
    assert sum("running" in line for line in logs) == 8


def test_same_seed_and_disjoint_data_for_every_method(finished):
    out, _, _ = finished
    configs = {
        (m, s): yaml.safe_load(open(os.path.join(out, m, s, "config.yaml")))
        for m in ("sft", "eksft")
        for s in ("sft", "rl")
    }
    assert {c["seed"] for c in configs.values()} == {3}
    assert configs[("sft", "sft")]["loss_type"] == "sft" and configs[("eksft", "sft")]["loss_type"] == "eksft"
    sft, rl = configs[("eksft", "sft")], configs[("eksft", "rl")]
    assert sft["train_file"] == rl["train_file"] and (sft["max_samples"], rl["skip_samples"], rl["max_samples"]) == (
        8,
        8,
        4,
    )
    assert rl["model_name_or_path"] == os.path.join(out, "eksft", "sft")
    assert sum(1 for _ in open(sft["train_file"])) == 12  # 8 SFT + 4 RL records, written once
    # What the stages actually read from those settings: the RL prompts are the 4 records after the 8 SFT ones.
    from eksft.data.formats import load_records
    from eksft.rl import RLConfig
    from eksft.rl.data import load_prompts

    sft_prompts = [r["prompt"][0]["content"] for r in load_records(sft["train_file"], max_samples=sft["max_samples"])]
    rl_cfg = RLConfig(
        output_dir=os.path.join(out, "check"),
        report_to=[],
        use_vllm=False,
        bf16=False,
        **{k: rl[k] for k in ("train_file", "skip_samples", "max_samples")},
    )
    rl_prompts = [p[0]["content"] for p in load_prompts(rl_cfg)["prompt"]]
    assert len(sft_prompts) == 8 and len(rl_prompts) == 4 and not set(sft_prompts) & set(rl_prompts)


def test_report_has_both_tables(finished):
    out, report, _ = finished
    md = open(os.path.join(out, "report", "report.md")).read()
    assert "## Stage 1: after SFT" in md and "## Stage 2: after SFT -> RL (DAPO)" in md
    header = "| Method | arithmetic-easy pass@1 | arithmetic-easy pass@2 | Average pass@1 | Average pass@2 |"
    assert md.count(header) == 2
    assert report["k"] == 2
    for stage in ("sft_eval", "rl_eval"):
        assert set(report["stages"][stage]) == {"sft", "eksft"}
        for method, row in report["stages"][stage].items():
            res = json.load(open(os.path.join(out, method, stage, "results.json")))["results"]["arithmetic-easy"]
            summary = next(iter(res.values()))
            assert row["benchmarks"]["arithmetic-easy"] == {
                "pass@1": summary["pass@1"],
                "pass@2": summary["pass@2"],
                "pass@1_interval": summary["intervals"]["pass@1"],
                "pass@2_interval": summary["intervals"]["pass@2"],
            }
            assert row["average"]["pass@1"] == summary["pass@1"]  # one benchmark: the average is its value
            assert f"| {method} | {100 * summary['pass@1']:.1f} [" in md  # value [95% interval]
    assert os.path.exists(os.path.join(out, "report", "pass_at_k_arithmetic-easy_sft.png"))
    assert os.path.exists(os.path.join(out, "report", "pass_at_k_arithmetic-easy_rl.png"))


def test_report_has_rl_effect_and_rl_curves(finished):
    """Each method after RL against itself after SFT (paired), and the RL stage's curves as a plot."""
    out, report, _ = finished
    md = open(os.path.join(out, "report", "report.md")).read()
    assert "## What RL changed: after SFT -> RL minus after SFT, per method" in md
    effects = {(r["method"], r["metric"]) for r in report["rl_effects"]}
    assert effects == {(m, f"pass@{k}") for m in ("sft", "eksft") for k in (1, 2)}
    assert "sft (SFT -> RL) − sft (SFT) on pass@1" in md
    assert "![rl curves](rl_curves.png)" in md and os.path.exists(os.path.join(out, "report", "rl_curves.png"))
    for method in ("sft", "eksft"):
        curves = report["rl_curves"][method]
        assert [s for s, _ in curves["policy entropy"]] == [1, 2]  # logging_steps 1, max_steps 2
        (_, share), *_ = curves["dynamic sampling: groups with variance / drawn"]
        assert 0.0 <= share <= 1.0


def test_second_run_skips_finished_stages_and_reruns_unmarked_ones(finished, monkeypatch):
    out, report, _ = finished

    def refuse(*args, **kwargs):
        raise AssertionError("a finished stage ran again")

    monkeypatch.setattr(pipeline_run, "_train", refuse)
    monkeypatch.setattr(pipeline_run, "_evaluate", refuse)
    logs = []
    again = run_pipeline(pipeline_config_from(tiny_pipeline(out)), log=logs.append)
    assert sum("skipped" in line for line in logs) == 8
    assert again["stages"] == report["stages"]

    # A folder without DONE.json (crash mid-stage) is not finished: only that stage runs again.
    os.remove(os.path.join(out, "eksft", "rl_eval", "DONE.json"))
    ran = []
    monkeypatch.setattr(pipeline_run, "_evaluate", lambda model, folder, pc, log: ran.append(folder))
    run_pipeline(pipeline_config_from(tiny_pipeline(out)), log=lambda line: None)
    assert ran == [os.path.join(out, "eksft", "rl_eval")]
    assert os.path.exists(os.path.join(out, "eksft", "rl_eval", "DONE.json"))


def test_cli_report_only(finished, tmp_path, capsys):
    out, _, _ = finished
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(tiny_pipeline(out)))
    os.remove(os.path.join(out, "report", "report.md"))
    assert main(["pipeline", str(path), "--report_only"]) == 0
    assert "Stage 2" in open(os.path.join(out, "report", "report.md")).read()


def test_report_lists_the_targets_eksft_kept_out_of_cross_entropy(finished):
    out, _, _ = finished
    md = open(os.path.join(out, "report", "report.md")).read()
    assert "## Targets `eksft` kept out of cross-entropy in SFT" in md and "`sft` kept out" not in md
    assert "| token | masked | steps all masked | final p |" in md
    assert os.path.isfile(os.path.join(out, "eksft", "sft", "mask_targets.json"))
    assert not os.path.exists(os.path.join(out, "sft", "sft", "mask_targets.json"))  # SFT masks nothing


def test_methods_flag_runs_only_the_named_methods(finished, tmp_path, monkeypatch, capsys):
    out, _, _ = finished
    for method in ("sft", "eksft"):
        os.remove(os.path.join(out, method, "rl_eval", "DONE.json"))
    ran = []
    monkeypatch.setattr(pipeline_run, "_evaluate", lambda model, folder, pc, log: ran.append(folder))
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(tiny_pipeline(out)))
    assert main(["pipeline", str(path), "--methods", "eksft"]) == 0
    assert ran == [os.path.join(out, "eksft", "rl_eval")]  # sft's unfinished stage was left alone
    assert not os.path.exists(os.path.join(out, "sft", "rl_eval", "DONE.json"))

    capsys.readouterr()
    assert main(["pipeline", str(path), "--methods", "dft"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("eksft pipeline: --methods: dft not in the config's methods (") and "Traceback" not in err
    pipeline_run.mark_done(os.path.join(out, "sft", "rl_eval"), {"restored": True})  # leave the fixture finished


def test_methods_flag_takes_the_configs_spelling(tmp_path):
    """`--methods 'eksft[rho=0.1]'` (as the config writes it) names the folder eksft__rho-0.1, like the slug does."""
    pc = pipeline_config_from({**tiny_pipeline(str(tmp_path)), "methods": ["sft", "eksft[rho=0.1]"]})
    assert list(pc.methods) == ["sft", "eksft__rho-0.1"]
    assert pipeline_run._folder_name(pc, "eksft[rho=0.1]") == "eksft__rho-0.1"
    assert pipeline_run._folder_name(pc, "eksft__rho-0.1") == "eksft__rho-0.1"
    # a method the config lacks still maps to its folder name, which run_pipeline then refuses
    assert pipeline_run._folder_name(pc, "eksft[rho=0.2]") == "eksft__rho-0.2"
    with pytest.raises(
        ValueError, match=r"--methods: eksft__rho-0.2 not in the config's methods \(sft, eksft__rho-0.1\)"
    ):
        run_pipeline(pc, only=["eksft[rho=0.2]"])
