"""``eksft rl CONFIG.yaml [--field value ...]``: DAPO from any checkpoint (docs/rl.md).

Every field of :class:`eksft.rl.RLConfig` (TRL's ``GRPOConfig`` plus the data / reward fields) is a YAML key and a
``--flag`` with the same name; flags override the YAML; ``include: base.yaml`` inherits, as in ``eksft train``.
"""

from __future__ import annotations

import argparse

from eksft.config_io import add_config_arguments, config_from_file, flag_overrides

HELP = "Reinforcement learning with DAPO (TRL GRPOTrainer) from any checkpoint (YAML config + --field overrides)."
CLI_ONLY = ("config",)


def _config_class():
    from eksft.rl import RLConfig

    return RLConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, _config_class)  # GRPOConfig's ~250 fields, added when `rl` itself is parsed


def config_from(path: str | None, overrides: dict | None = None):
    """YAML (with includes) + overrides -> ``RLConfig``."""
    return config_from_file(path, overrides, _config_class(), "eksft rl")


def run(args) -> int:
    import atexit

    from eksft.rl import train_rl
    from eksft.train.output_dir import check_output_dir, previous_run_remover, resolve_resume, resuming
    from eksft.train.run import shut_down_process_group

    cfg = config_from(args.config, flag_overrides(args, CLI_ONLY))
    # Before any model loads: the folder rule of `eksft train` (a used output_dir needs resume or overwrite).
    cfg.resume_from_checkpoint = resolve_resume(cfg.resume_from_checkpoint, cfg.output_dir)
    overwrite = getattr(cfg, "overwrite_output_dir", False)
    check_output_dir(cfg.output_dir, resume=cfg.resume_from_checkpoint, overwrite=overwrite, config="RLConfig")
    atexit.register(shut_down_process_group)
    remover = [previous_run_remover(cfg.output_dir)] if overwrite and not resuming(cfg.resume_from_checkpoint) else []
    trainer = train_rl(cfg, callbacks=remover or None)
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():  # one line, not one per process
        print(f"done: model and metrics.jsonl in {cfg.output_dir} ({trainer.state.global_step} steps)", flush=True)
    return 0
