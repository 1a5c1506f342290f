"""``eksft train --smoke`` on every training YAML of configs/paper/ (the per-method SFT configs and their include
bases), each in this process (the engine, DeepSpeed ZeRO-3, is replaced by one process here; the pipeline smoke tests
run it on 2 CPU processes): the model becomes a random Qwen3 with 2 layers, the missing data a stand-in with the
configured columns, 2 optimiser steps run, checkpoint-1 resumes to the uninterrupted step-2 loss, and the checklist
says so; the configured output folder is never written. Also: the size estimate from a real ``config.json`` at hand,
and the one-line errors of a misspelled field and of data without the configured column (CPU, ~5 s per config)."""

from __future__ import annotations

import glob
import json
import os
import shutil

import pytest
import yaml

from eksft.cli import main
from eksft.smoke import smoke_job
from eksft.smoke.model import GiB, memory_estimate, parameter_count, real_config

from .conftest import PAPER

SFT = sorted(
    os.path.basename(p)
    for p in glob.glob(os.path.join(PAPER, "*.yaml"))
    if not os.path.basename(p).startswith(("pipeline_", "rl_"))
)
# the Qwen3-4B files and the shared bases in the default suite; the Qwen3-8B copies (same fields, another name) slow
FAST = [n for n in SFT if "8b" not in n]
SLOW = [n for n in SFT if "8b" in n]


def statuses(checklist) -> dict:
    return {i["item"]: i["status"] for i in checklist.items}


def run_sft(name: str, tmp_path) -> tuple:
    out = str(tmp_path / "run")
    ck = smoke_job("train", os.path.join(PAPER, name), {"output_dir": out}, single_process=True)
    return ck, out


def check_sft(name, tmp_path):
    ck, out = run_sft(name, tmp_path)
    s = statuses(ck)
    assert ck.ok, ck.items
    assert s["training"] == s["resume"] == s["checkpoint"] == s["config"] == "ran"
    assert s["model"] == "replaced" and s["data: train_file"] == "replaced" and s["GPU only"] == "not checked"
    assert s["engine"] == "replaced"  # ZeRO-3 -> one process in this test (deepspeed: configs/ds_zero3.json)
    folder = out + "-smoke"
    assert not os.path.exists(out)  # the configured output folder is never written
    saved = json.load(open(os.path.join(folder, "smoke.json")))
    assert saved["checklist"] == ck.items and saved["ok"] is True
    model = json.load(open(os.path.join(folder, "model", "config.json")))
    family = "qwen3" if "qwen3" in name else "llama"  # common.yaml names no model: the built-in Llama family
    assert (model["model_type"], model["num_hidden_layers"], model["hidden_size"]) == (family, 2, 64)
    config = yaml.safe_load(open(os.path.join(folder, "run", "config.yaml")))
    assert config["max_steps"] == 2 and config["max_length"] <= 256 and config["bf16"] is False
    assert os.path.isdir(os.path.join(folder, "run", "checkpoint-1"))


@pytest.mark.parametrize("name", FAST)
def test_paper_sft_config_smoke_runs(name, tmp_path):
    check_sft(name, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_paper_sft_config_smoke_runs_8b(name, tmp_path):
    check_sft(name, tmp_path)


# Qwen3-4B's config.json as published (Qwen/Qwen3-4B on the hub): written to a folder, it is "at hand".
QWEN3_4B = {
    "architectures": ["Qwen3ForCausalLM"],
    "model_type": "qwen3",
    "hidden_size": 2560,
    "intermediate_size": 9728,
    "num_hidden_layers": 36,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "vocab_size": 151936,
    "max_position_embeddings": 40960,
    "tie_word_embeddings": True,
    "rope_theta": 1000000,
    "rms_norm_eps": 1e-6,
}


def test_size_estimate_from_a_config_at_hand(tmp_path):
    folder = tmp_path / "Qwen3-4B"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(QWEN3_4B))
    from eksft.models.tiny import tiny_tokenizer

    tiny_tokenizer().save_pretrained(folder)  # a tokenizer at hand: the smoke model keeps it
    params = parameter_count(real_config(str(folder)))
    assert 3.9e9 < params < 4.1e9  # "Number of Parameters: 4.0B" on the model card
    est = memory_estimate(
        real_config(str(folder)),
        params,
        processes=8,
        sharding="zero3",
        batch=1,
        length=20000,
        checkpointing=True,
        reference=True,
        logits=False,
    )
    assert est["model_states"] == round(16 * params / 8 / GiB, 2)  # mixed-precision Adam, ZeRO-3 over 8
    assert est["reference"] == round(2 * params / 8 / GiB, 2)
    # with the model at hand the smoke model keeps its architecture (tied embeddings) at tiny sizes, and the
    # checklist gives the estimate for the config's engine, batch and length
    cfg = tmp_path / "sft.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "include": os.path.join(PAPER, "qwen3_4b_eksft.yaml"),
                "model_name_or_path": str(folder),
                "output_dir": str(tmp_path / "run"),
            }
        )
    )
    ck = smoke_job("train", str(cfg), {}, single_process=True)
    assert ck.ok and statuses(ck)["size estimate"] == "ran" and statuses(ck)["tokenizer"] == "ran"
    assert ck.info["size"]["parameters"] == params and ck.info["size"]["sharding"] == "zero3"
    model = json.load(open(tmp_path / "run-smoke" / "model" / "config.json"))
    assert model["tie_word_embeddings"] is True and model["num_hidden_layers"] == 2


def paper_copy(tmp_path, name: str, edit) -> str:
    """A copy of a paper config in tmp_path (includes made absolute), with ``edit(values)`` applied."""
    values = yaml.safe_load(open(os.path.join(PAPER, name)))
    for key in ("include", "sft", "rl"):
        if isinstance(values.get(key), str):
            values[key] = os.path.join(PAPER, values[key])
    edit(values)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values))
    return str(path)


def test_misspelled_field_stops_the_smoke_run(tmp_path, capsys):
    path = paper_copy(
        tmp_path, "qwen3_4b_eksft.yaml", lambda v: v.update(lamda_kl=0.05, output_dir=str(tmp_path / "r"))
    )
    assert main(["train", path, "--smoke"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("eksft train: ") and "'lamda_kl'" in err[0], err
    assert not os.path.exists(tmp_path / "r-smoke" / "run")  # stopped before any training


def test_data_without_the_configured_column_stops_the_smoke_run(tmp_path, capsys):
    data = tmp_path / "sft.jsonl"
    data.write_text(json.dumps({"question": "1+1?", "completion": "\\boxed{2}"}) + "\n")
    path = paper_copy(
        tmp_path, "qwen3_4b_sft.yaml", lambda v: v.update(train_file=str(data), output_dir=str(tmp_path / "r"))
    )
    assert main(["train", path, "--smoke"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("eksft train: ") and "prompt" in err[0], err


def test_a_folder_that_is_not_a_smoke_run_is_never_cleared(tmp_path, capsys):
    keep = tmp_path / "r-smoke" / "model.safetensors"
    keep.parent.mkdir()
    keep.write_text("a real run")
    path = paper_copy(tmp_path, "qwen3_4b_sft.yaml", lambda v: v.update(output_dir=str(tmp_path / "r")))
    assert main(["train", path, "--smoke"]) == 2
    assert "smoke folder" in capsys.readouterr().err and keep.read_text() == "a real run"
    shutil.rmtree(tmp_path / "r-smoke")


@pytest.mark.parametrize("command", ["train", "rl", "pipeline"])
def test_smoke_flag_is_parsed_and_documented(command):
    from eksft.cli import build_parser

    parser = build_parser([command, "config.yaml", "--smoke"])
    assert parser.parse_args([command, "config.yaml", "--smoke"]).smoke is True
    assert getattr(parser.parse_args([command, "config.yaml"]), "smoke", False) is False
    sub = parser._subparsers._group_actions[0].choices[command]
    assert "--smoke" in sub.format_help()


def test_a_smoke_folder_left_by_an_error_is_reused(tmp_path, capsys):
    path = paper_copy(
        tmp_path, "qwen3_4b_eksft.yaml", lambda v: v.update(lamda_kl=0.05, output_dir=str(tmp_path / "r"))
    )
    assert main(["train", path, "--smoke"]) == 2  # the stand-in data was written before the field check stopped it
    assert main(["train", path, "--smoke"]) == 2
    err = capsys.readouterr().err
    assert err.count("'lamda_kl'") == 2 and "smoke folder" not in err
