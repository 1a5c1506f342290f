"""``eksft train CONFIG.yaml [--field value ...]``: fine-tune with any loss of ``eksft.losses``.

Every field of :class:`eksft.train.EKSFTConfig` (TRL's ``SFTConfig`` plus the EKSFT fields) is a YAML key and a
``--flag`` with the same name; flags override the YAML. YAML files may ``include: other.yaml`` (a path relative to
the file) to inherit a base config, which keeps per-method configs a few lines long.
"""

from __future__ import annotations

import argparse

from eksft.commands.flags import add_smoke_flag
from eksft.config_io import add_config_arguments, config_from_file, flag_overrides

HELP = "Fine-tune a causal LM with EKSFT or a comparison loss (YAML config + --field overrides)."
CLI_ONLY = ("config", "smoke")


def _config_class():
    from eksft.train.config import EKSFTConfig

    return EKSFTConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, _config_class)
    add_smoke_flag(p)


def config_from(path: str | None, overrides: dict | None = None):
    """YAML (with includes) + overrides -> ``EKSFTConfig``; unknown keys are an error naming them."""
    return config_from_file(path, overrides, _config_class(), "eksft train")


def run(args) -> int:
    if getattr(args, "smoke", False):
        from eksft.smoke import check_ok, smoke_job

        return check_ok(smoke_job("train", args.config, flag_overrides(args, CLI_ONLY)))
    from eksft.jobs.command import run_job
    from eksft.train import train

    return run_job(config_from(args.config, flag_overrides(args, CLI_ONLY)), train)
