"""``eksft rl CONFIG.yaml [--field value ...]``: DAPO from any checkpoint (docs/rl.md).

Every field of :class:`eksft.rl.RLConfig` (TRL's ``GRPOConfig`` plus the data / reward fields) is a YAML key and a
``--flag`` with the same name; flags override the YAML; ``include: base.yaml`` inherits, as in ``eksft train``.
"""

from __future__ import annotations

import argparse

from eksft.commands.flags import add_smoke_flag
from eksft.config_io import add_config_arguments, config_from_file, flag_overrides

HELP = "Reinforcement learning with DAPO (TRL GRPOTrainer) from any checkpoint (YAML config + --field overrides)."
CLI_ONLY = ("config", "smoke")


def _config_class():
    from eksft.rl import RLConfig

    return RLConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, _config_class)  # GRPOConfig's ~250 fields, added when `rl` itself is parsed
    add_smoke_flag(p)


def config_from(path: str | None, overrides: dict | None = None):
    """YAML (with includes) + overrides -> ``RLConfig``."""
    return config_from_file(path, overrides, _config_class(), "eksft rl")


def run(args) -> int:
    if getattr(args, "smoke", False):
        from eksft.smoke import check_ok, smoke_job

        return check_ok(smoke_job("rl", args.config, flag_overrides(args, CLI_ONLY)))
    from eksft.jobs.command import run_job
    from eksft.rl import train_rl

    return run_job(config_from(args.config, flag_overrides(args, CLI_ONLY)), train_rl)
