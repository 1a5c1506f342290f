"""``eksft pipeline --smoke`` on the paper's pipelines and ``eksft rl --smoke`` on the paper's RL configs, under
their engine (DeepSpeed ZeRO-3 from ``deepspeed: configs/ds_zero3.json`` and the 8-GPU ``launcher``) as a 2-process
CPU launch through eksft.cpu_launch. Default suite: pipeline_qwen3_4b.yaml for one method, sed_sft (its calibration
of tau ran a forward on the ZeRO-3-partitioned model before the engine existed, and failed), every stage (SFT with a
ZeRO-3 checkpoint and its resume, evaluation on stand-in benchmark files, DAPO with dynamic sampling, evaluation,
report; ~100 s on 2 cores), and the one-line errors of a misspelled field and of data lacking the configured column.
``slow``: every paper pipeline in full and the RL configs alone."""

from __future__ import annotations

import glob
import json
import os

import pytest

from eksft.cli import main

from .conftest import PAPER
from .test_smoke_configs import paper_copy

PIPELINES = sorted(os.path.basename(p) for p in glob.glob(os.path.join(PAPER, "pipeline_*.yaml")))
RL = sorted(os.path.basename(p) for p in glob.glob(os.path.join(PAPER, "rl_*.yaml")))


def checklist(folder) -> dict:
    doc = json.load(open(os.path.join(folder, "smoke.json")))
    assert doc["ok"] is True, doc["checklist"]
    return {i["item"]: (i["status"], i["detail"]) for i in doc["checklist"]}


def check_pipeline(folder, methods: list[str], later: list[str]) -> dict:
    c = checklist(folder)
    assert c["engine"][0] == "ran" and "ZeRO-3" in c["engine"][1] and "2 CPU process" in c["engine"][1]
    for method in methods:
        assert c[f"{method}/sft"][0] == "ran"
        # ZeRO-3 really sharded: DeepSpeed's per-process checkpoint shards
        checkpoint = os.path.join(folder, method, "sft", "checkpoint-1")
        assert any(n.startswith("global_step") for n in os.listdir(checkpoint))
    for method in later:
        for stage in ("sft_eval", "rl", "rl_eval"):
            assert c[f"{method}/{stage}"][0] == "ran", (method, stage)
            assert os.path.isfile(os.path.join(folder, method, stage, "DONE.json"))
    assert c["dynamic sampling"][0] == "ran" and c["resume"][0] == "ran" and c["report"][0] == "ran"
    assert c["data"][0] == "replaced" and c["eval data"][0] == "replaced"  # the paper's files are not here
    report = open(os.path.join(folder, "report", "report.md")).read()
    assert all(m in report for m in later)
    return c


def test_paper_pipeline_smoke_one_method(tmp_path, capsys):
    folder = str(tmp_path / "smoke")
    config = os.path.join(PAPER, "pipeline_qwen3_4b.yaml")
    assert main(["pipeline", config, "--smoke", "--output_dir", folder, "--methods", "sed_sft"]) == 0
    check_pipeline(folder, ["sed_sft"], ["sed_sft"])
    tau = json.load(open(os.path.join(folder, "sed_sft", "sft", "sed_tau.json")))
    assert 0 < tau["tau"] <= 1 and tau["num_records"] == 8  # calibrated under ZeRO-3 (sed_calibration_samples capped)
    assert "smoke run passed" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("name", PIPELINES)
def test_paper_pipeline_smoke_every_method(name, tmp_path):
    from eksft.pipeline import load_pipeline_config

    methods = list(load_pipeline_config(os.path.join(PAPER, name)).methods)
    folder = str(tmp_path / "smoke")
    assert main(["pipeline", os.path.join(PAPER, name), "--smoke", "--output_dir", folder]) == 0
    c = check_pipeline(folder, methods, methods[:1])
    assert c["other methods' later stages"][0] == "not checked"


@pytest.mark.slow
@pytest.mark.parametrize("name", RL)
def test_paper_rl_config_smoke_runs(name, tmp_path):
    path = paper_copy(tmp_path, name, lambda v: v.update(output_dir=str(tmp_path / "rl")))
    assert main(["rl", path, "--smoke"]) == 0
    c = checklist(str(tmp_path / "rl-smoke"))
    assert c["training"][0] == c["dynamic sampling"][0] == "ran" and "ZeRO-3" in c["engine"][1]
    assert c["model"][0] == "replaced" and "qwen3" in c["model"][1]


def test_misspelled_field_stops_the_pipeline_smoke(tmp_path, capsys):
    def misspell(values):
        values["methods"]["eksft"] = {"rho": 0.2, "lamda_kl": 0.05}

    path = paper_copy(tmp_path, "pipeline_qwen3_4b.yaml", misspell)
    assert main(["pipeline", path, "--smoke", "--output_dir", str(tmp_path / "smoke")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("eksft pipeline: ") and "'lamda_kl'" in err[0], err
    assert not os.path.exists(tmp_path / "smoke" / "eksft")  # nothing trained


def test_data_without_the_configured_column_stops_the_pipeline_smoke(tmp_path, capsys):
    data = tmp_path / "math.jsonl"
    rows = [{"problem": f"{i} + 1?", "completion": f"\\boxed{{{i + 1}}}", "answer": str(i + 1)} for i in range(30)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = paper_copy(tmp_path, "pipeline_qwen3_4b.yaml", lambda v: v["data"].update(train_file=str(data)))
    assert main(["pipeline", path, "--smoke", "--output_dir", str(tmp_path / "smoke")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("eksft pipeline: ") and "'prompt'" in err[0], err
