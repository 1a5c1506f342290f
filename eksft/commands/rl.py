"""``eksft rl CONFIG.yaml [--field value ...]``: DAPO from any checkpoint (docs/rl.md).

Every field of :class:`eksft.rl.RLConfig` (TRL's ``GRPOConfig`` plus the data / reward fields) is a YAML key and a
``--flag`` with the same name; flags override the YAML; ``include: base.yaml`` inherits, as in ``eksft train``.
"""

from __future__ import annotations

import argparse
import dataclasses

from eksft.commands.train import add_field_arguments, load_yaml

HELP = "Reinforcement learning with DAPO (TRL GRPOTrainer) from any checkpoint (YAML config + --field overrides)."
CLI_ONLY = ("config",)


def _config_class():
    from eksft.rl import RLConfig

    return RLConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="YAML config file (keys = the fields below)")
    # GRPOConfig's ~250 fields are added only when `rl` itself is parsed, so `eksft --help` stays fast.
    parse = p.parse_known_args

    def parse_with_fields(*a, **kw):
        if not getattr(p, "_eksft_fields", False):
            add_field_arguments(p, _config_class())
            p._eksft_fields = True
        return parse(*a, **kw)

    p.parse_known_args = parse_with_fields


def config_from_values(values: dict, cls=None, where: str = "config"):
    """A mapping of field: value -> ``cls`` (default RLConfig); unknown keys are an error naming them."""
    from transformers import HfArgumentParser

    cls = cls or _config_class()
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - known)
    if unknown:
        command = "eksft rl" if cls.__name__ == "RLConfig" else "eksft train"
        hint = " (transformers 5 has no warmup_ratio: warmup_steps takes a fraction < 1)" if "warmup_ratio" in unknown else ""
        raise ValueError(f"{where}: unknown field(s) {unknown} for {cls.__name__}{hint}; `{command} --help` lists "
                         "them.")  # fmt: skip
    (cfg,) = HfArgumentParser(cls).parse_dict(dict(values))
    return cfg


def config_from(path: str | None, overrides: dict | None = None):
    """YAML (with includes) + overrides -> ``RLConfig``."""
    values = load_yaml(path) if path else {}
    values.update(overrides or {})
    return config_from_values(values, where=path or "flags")


def run(args) -> int:
    from eksft.rl import train_rl

    overrides = {k: v for k, v in vars(args).items() if k not in CLI_ONLY and not k.startswith("_") and k != "command"}
    cfg = config_from(args.config, overrides)
    trainer = train_rl(cfg)
    print(f"done: model and metrics.jsonl in {cfg.output_dir} ({trainer.state.global_step} steps)", flush=True)
    return 0
