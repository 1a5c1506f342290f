"""Config files and flags shared by the commands that take a TRL-style config (``eksft train``, ``eksft rl``, and the
stages of ``eksft pipeline``): YAML with ``include:``, one ``--flag`` per dataclass field, and the mapping -> config
step whose error names unknown keys. No heavy import at module level: ``eksft --help`` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import get_type_hints

#: What people carry over from other trainers that transformers 5 does not have, and what to write instead.
RENAMED = {"warmup_ratio": "transformers 5 has no warmup_ratio: warmup_steps takes a fraction < 1"}


def load_yaml(path: str, seen: tuple[str, ...] = ()) -> dict:
    """A YAML mapping; ``include: base.yaml`` (relative to the file) is read first and overridden by the file."""
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


def add_field_arguments(p: argparse.ArgumentParser, cls) -> None:
    """Every field of the config dataclass ``cls`` as a flag, with HfArgumentParser's typing rules."""
    from transformers import HfArgumentParser

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


def add_config_arguments(p: argparse.ArgumentParser, config_class) -> None:
    """``CONFIG.yaml`` plus every field of ``config_class()`` as a flag. Importing the TRL config takes seconds, so
    the ~200 field flags are added only when this command itself is parsed (``eksft --help`` stays fast)."""
    p.add_argument("config", nargs="?", help="YAML config file (keys = the fields below)")
    parse = p.parse_known_args

    def parse_with_fields(*a, **kw):
        if not getattr(p, "_eksft_fields", False):
            add_field_arguments(p, config_class())
            p._eksft_fields = True
        return parse(*a, **kw)

    p.parse_known_args = parse_with_fields


def config_from_values(values: dict, cls, where: str = "config", command: str = "eksft train"):
    """A mapping of field: value -> ``cls``; unknown keys are an error naming them (and ``command --help``)."""
    from transformers import HfArgumentParser

    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - known)
    if unknown:
        hints = "".join(f" ({RENAMED[k]})" for k in unknown if k in RENAMED)
        raise ValueError(f"{where}: unknown field(s) {unknown} for {cls.__name__}{hints}; `{command} --help` lists "
                         "every field.")  # fmt: skip
    (cfg,) = HfArgumentParser(cls).parse_dict(dict(values))
    return cfg


def config_from_file(path: str | None, overrides: dict | None, cls, command: str):
    """YAML (with includes) + flag overrides -> ``cls``."""
    values = load_yaml(path) if path else {}
    values.update(overrides or {})
    return config_from_values(values, cls, where=path or "flags", command=command)


def flag_overrides(args: argparse.Namespace, cli_only=("config",)) -> dict:
    """The config fields given as flags (absent flags are not in the namespace)."""
    return {k: v for k, v in vars(args).items() if k not in cli_only and not k.startswith("_") and k != "command"}
