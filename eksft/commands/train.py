"""``eksft train CONFIG.yaml [--field value ...]``: fine-tune with any loss of ``eksft.losses``.

Every field of :class:`eksft.train.EKSFTConfig` (TRL's ``SFTConfig`` plus the EKSFT fields) is a YAML key and a
``--flag`` with the same name; flags override the YAML. YAML files may ``include: other.yaml`` (a path relative to
the file) to inherit a base config, which keeps per-method configs a few lines long.
"""

from __future__ import annotations

import argparse

from eksft.config_io import add_config_arguments, config_from_file, flag_overrides, load_yaml  # noqa: F401

HELP = "Fine-tune a causal LM with EKSFT or a comparison loss (YAML config + --field overrides)."
CLI_ONLY = ("config",)


def _config_class():
    from eksft.train.config import EKSFTConfig

    return EKSFTConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, _config_class)


def config_from(path: str | None, overrides: dict | None = None):
    """YAML (with includes) + overrides -> ``EKSFTConfig``; unknown keys are an error naming them."""
    return config_from_file(path, overrides, _config_class(), "eksft train")


def run(args) -> int:
    from eksft.train import TrainingDiverged, train

    cfg = config_from(args.config, flag_overrides(args, CLI_ONLY))
    try:
        trainer = train(cfg)
    except TrainingDiverged as e:
        print(str(e), flush=True)
        return 1
    if trainer.is_world_process_zero():  # one line, not one per process
        print(f"done: model and metrics.jsonl in {cfg.output_dir} ({trainer.state.global_step} steps)", flush=True)
    return 0
