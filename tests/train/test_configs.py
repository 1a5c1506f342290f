"""Configs and the ``eksft train`` CLI (CPU, no model): every shipped YAML parses into EKSFTConfig; paper configs
carry the paper's settings and the comparison methods share them exactly; flags override YAML; ``--help`` lists
every field; invalid fields fail early naming the field; loss_type names eksft losses despite SFTConfig's own."""

from __future__ import annotations

import argparse
import dataclasses
import glob
import os
import re

import pytest

from eksft.commands import train as train_cmd
from eksft.config_io import load_yaml
from eksft.train import EKSFTConfig

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# `eksft rl` / `eksft pipeline` configs (rl_*, pipeline_*) are not EKSFTConfigs: tests/rl and tests/pipeline parse them;
# configs/accelerate/ holds `accelerate launch` configs (test_accelerate_configs.py).
CONFIGS = sorted(
    p
    for p in glob.glob(os.path.join(ROOT, "configs", "**", "*.yaml"), recursive=True)
    if not os.path.basename(p).startswith(("rl_", "pipeline_")) and os.path.join("configs", "accelerate") not in p
)
LOSS_FIELDS = {
    "output_dir",
    "loss_type",
    "rho",
    "lambda_entropy",
    "lambda_kl",
    "selection",
    "variant",
    "entropy_unit",
    "normalization",
    "iw_clip",
    "psft_epsilon_high",
    "psft_updates_per_batch",
    "asft_lambda",
    "sed_lambda",
    "sed_k",
    "sed_r",
    "sed_calibration_samples",
    "gem_beta",
    "eaft_alpha",
    "eaft_entropy",
    "eaft_topk",
    "eaft_normalizer",
}
# Real-hardware fields that cannot validate on a CPU test machine (bf16 needs a GPU, deepspeed the package).
CPU_OVERRIDES = {"bf16": False, "deepspeed": None}


def parser():
    p = argparse.ArgumentParser(prog="eksft train")
    train_cmd.add_arguments(p)
    return p


@pytest.mark.parametrize("path", CONFIGS, ids=[os.path.relpath(p, ROOT) for p in CONFIGS])
def test_every_shipped_config_parses(path, monkeypatch):
    monkeypatch.chdir(ROOT)
    values = load_yaml(path)
    overrides = {k: v for k, v in CPU_OVERRIDES.items() if k in values}
    cfg = train_cmd.config_from(path, overrides)
    assert type(cfg) is EKSFTConfig and cfg.loss_type == values.get("loss_type", "eksft")
    for key, value in values.items():  # every value the file sets reaches the config (unless a CPU override)
        if key not in overrides and key != "include" and hasattr(cfg, key) and not isinstance(value, (dict, list)):
            got = getattr(cfg, key)
            # paths are resolved against the config's folder; enum fields hold the YAML string as their value
            resolved = isinstance(value, str) and os.sep in value and str(got).endswith(value.lstrip("./"))
            assert got == value or resolved or getattr(got, "value", None) == value, (key, got, value)
    if "deepspeed" in values:
        assert os.path.exists(values["deepspeed"])


def test_paper_configs_settings_and_identical_across_methods():
    for size in ("4b", "8b"):
        eksft = load_yaml(os.path.join(ROOT, "configs", "paper", f"qwen3_{size}_eksft.yaml"))
        assert (eksft["rho"], eksft["lambda_entropy"], eksft["lambda_kl"], eksft["learning_rate"]) == (
            0.2,
            0.05,
            0.05,
            1e-5,
        )
        assert (eksft["num_train_epochs"], eksft["adam_beta1"], eksft["adam_beta2"], eksft["weight_decay"]) == (
            8,
            0.9,
            0.95,
            0.1,
        )
        assert (eksft["per_device_train_batch_size"], eksft["gradient_accumulation_steps"], eksft["max_length"]) == (
            1,
            8,
            20000,
        )
        assert eksft["lr_scheduler_type"] == "cosine" and eksft["warmup_steps"] == 0.01 and eksft["bf16"] is True
        shared = {k: v for k, v in eksft.items() if k not in LOSS_FIELDS}
        methods = glob.glob(os.path.join(ROOT, "configs", "paper", f"qwen3_{size}_*.yaml"))
        losses = set()
        for path in methods:
            values = load_yaml(path)
            assert {k: v for k, v in values.items() if k not in LOSS_FIELDS} == shared, path
            losses.add(values["loss_type"])
        assert losses == {"eksft", "sft", "dft", "iw_sft", "psft", "asft", "sed_sft", "gem", "eaft"}


def test_flags_override_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("rho: 0.3\nloss_type: eksft\nmax_steps: 9\n")
    args = parser().parse_args([str(path), "--rho", "0.1", "--use_peft", "--lora_target_modules", "q_proj", "v_proj"])
    cfg = train_cmd.config_from(args.config, {k: v for k, v in vars(args).items() if k != "config"})
    assert (cfg.rho, cfg.max_steps, cfg.use_peft, cfg.lora_target_modules) == (0.1, 9, True, ["q_proj", "v_proj"])


def test_help_lists_every_field(capsys):
    with pytest.raises(SystemExit):
        parser().parse_args(["--help"])
    text = capsys.readouterr().out
    for f in dataclasses.fields(EKSFTConfig):
        if f.init:
            assert f"--{f.name}" in text, f.name
    assert re.search(r"\(default:\s+0\.2\)", text)  # defaults are shown (rho)


@pytest.mark.parametrize(
    "values, match",
    [
        ({"loss_type": "nll"}, "loss_type"),
        ({"scope": "everywhere"}, "scope"),
        ({"rho": 1.5}, r"EKSFTConfig\.rho: must be in \[0, 1\], got 1\.5"),
        ({"loss_type": "sed_sft", "sed_k": 0}, "sed_k"),
        ({"psft_updates_per_batch": 0}, "psft_updates_per_batch"),
        ({"no_such_field": 1}, r"unknown field\(s\) \['no_such_field'\]"),
    ],
)
def test_invalid_fields_fail_naming_the_field(tmp_path, values, match):
    from eksft.losses import BoundLoss

    with pytest.raises(ValueError, match=match):
        cfg = train_cmd.config_from(None, {"output_dir": str(tmp_path), **values})
        BoundLoss.from_config(cfg)
