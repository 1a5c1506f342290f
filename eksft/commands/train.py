"""``eksft train CONFIG.yaml [--field value ...]``: fine-tune with any loss of ``eksft.losses``.

Every field of :class:`eksft.train.EKSFTConfig` (TRL's ``SFTConfig`` plus the EKSFT fields) is a YAML key and a
``--flag`` with the same name; flags override the YAML. YAML files may ``include: other.yaml`` (a path relative to
the file) to inherit a base config, which keeps per-method configs a few lines long.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import get_type_hints

HELP = "Fine-tune a causal LM with EKSFT or a comparison loss (YAML config + --field overrides)."
CLI_ONLY = ("config",)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="YAML config file (keys = the fields below)")
    # Importing SFTConfig takes seconds; add the ~200 field flags only when `train` itself is parsed, so
    # `eksft --help` and the other commands stay fast.
    parse = p.parse_known_args

    def parse_with_fields(*a, **kw):
        if not getattr(p, "_eksft_fields", False):
            add_field_arguments(p)
            p._eksft_fields = True
        return parse(*a, **kw)

    p.parse_known_args = parse_with_fields


def add_field_arguments(p: argparse.ArgumentParser, cls=None) -> None:
    """Every field of the config dataclass ``cls`` (default :class:`EKSFTConfig`) as a flag, with HfArgumentParser's
    typing rules; ``eksft rl`` reuses it with its RLConfig."""
    from transformers import HfArgumentParser

    if cls is None:
        from eksft.train.config import EKSFTConfig as cls

    hints = get_type_hints(cls)
    first = len(p._actions)
    for f in dataclasses.fields(cls):
        if f.init:
            f.type = hints[f.name]
            HfArgumentParser._parse_dataclass_field(p, f)
    # Flags only override what they name: defaults move into the help text and argparse leaves absent flags out
    # of the namespace, so the YAML's values survive.
    for action in p._actions[first:]:
        if action.default is not argparse.SUPPRESS and action.help is not argparse.SUPPRESS:
            action.help = f"{action.help or ''} (default: {action.default})".replace("%", "%%")
        action.default = argparse.SUPPRESS


def load_yaml(path: str, seen: tuple[str, ...] = ()) -> dict:
    import yaml

    if not os.path.exists(path):
        raise FileNotFoundError(f"config file {path!r} does not exist.")
    if os.path.abspath(path) in seen:
        raise ValueError(f"{path}: `include` cycle through {list(seen)}.")
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of field: value, got {type(data).__name__}.")
    base = data.pop("include", None)
    if base is None:
        return data
    base_path = os.path.join(os.path.dirname(path), base)
    return {**load_yaml(base_path, (*seen, os.path.abspath(path))), **data}


def config_from(path: str | None, overrides: dict | None = None):
    """YAML (with includes) + overrides -> ``EKSFTConfig``; unknown keys are an error naming them."""
    from transformers import HfArgumentParser

    from eksft.train.config import EKSFTConfig

    values = load_yaml(path) if path else {}
    values.update(overrides or {})
    known = {f.name for f in dataclasses.fields(EKSFTConfig) if f.init}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{path or 'flags'}: unknown field(s) {unknown}; `eksft train --help` lists every field.")
    (cfg,) = HfArgumentParser(EKSFTConfig).parse_dict(values)
    return cfg


def run(args) -> int:
    from eksft.train import TrainingDiverged, train

    overrides = {k: v for k, v in vars(args).items() if k not in CLI_ONLY and not k.startswith("_") and k != "command"}
    cfg = config_from(args.config, overrides)
    try:
        trainer = train(cfg)
    except TrainingDiverged as e:
        print(str(e), flush=True)
        return 1
    if trainer.is_world_process_zero():  # one line, not one per process
        print(f"done: model and metrics.jsonl in {cfg.output_dir} ({trainer.state.global_step} steps)", flush=True)
    return 0
