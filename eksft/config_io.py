"""Config files and flags shared by the commands that take a TRL-style config (``eksft train``, ``eksft rl``, and the
stages of ``eksft pipeline``): YAML with ``include:``, each field's choices / range / type checked in one line, one
``--flag`` per dataclass field, and the mapping -> config step whose error names unknown keys. Reading the files
themselves (UTF-8, JSON Lines) is eksft.text_files'. No heavy import at module level: ``eksft --help`` stays fast.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import math
import os
import types
import typing
from typing import get_type_hints

#: What people carry over from other trainers that transformers 5 does not have, and what to write instead.
RENAMED = {"warmup_ratio": "transformers 5 has no warmup_ratio: warmup_steps takes a fraction < 1"}


def load_yaml(path: str, seen: tuple[str, ...] = ()) -> dict:
    """A YAML mapping; ``include: base.yaml`` (relative to the file) is read first and overridden by the file."""
    import yaml

    from eksft.text_files import read_utf8

    if not os.path.exists(path):
        raise FileNotFoundError(f"config file {path!r} does not exist.")
    if os.path.abspath(path) in seen:
        raise ValueError(f"{path}: `include` cycle through {list(seen)}.")
    text = read_utf8(path)
    try:
        data = yaml.load(text, Loader=_unique_key_loader()) or {}
    except yaml.MarkedYAMLError as e:  # one line: FILE line N: problem
        mark = e.problem_mark or e.context_mark
        where = f" line {mark.line + 1}" if mark else ""
        raise ValueError(f"{path}{where}: {' '.join(filter(None, [e.context, e.problem]))}.") from None
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: invalid YAML ({e}).") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of field: value, got {type(data).__name__}.")
    base = data.pop("include", None)
    if base is None:
        return data
    base_path = os.path.join(os.path.dirname(path), base)
    return {**load_yaml(base_path, (*seen, os.path.abspath(path))), **data}


def check_choices(cfg, *names: str, owner: str | None = None) -> None:
    """Each named field of dataclass ``cfg`` holds one of its ``choices`` (field metadata; None where the field's
    default is None); else a ValueError naming ``owner.field`` (default: the class name), the value and the
    choices."""
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    for name in names:
        choices, value = list(fields[name].metadata["choices"]), getattr(cfg, name)
        if value not in choices and not (value is None and fields[name].default is None):
            raise ValueError(f"{owner or type(cfg).__name__}.{name}: {value!r}; choose one of {choices}.")


def parse_range(interval: str) -> tuple[bool, float, float, bool]:
    """``"[0, 1)"`` -> (closed below, low, high, closed above); ``inf`` for no bound."""
    low, high = (float(x) for x in interval[1:-1].split(","))
    return interval[0] == "[", low, high, interval[-1] == "]"


def range_text(interval: str) -> str:
    """What a range allows, in words: ``[1, inf)`` -> ``>= 1``, ``(0, inf)`` -> ``> 0``, else ``in [0, 1)``."""
    closed_low, low, high, _ = parse_range(interval)
    if high == float("inf"):
        return f"{'>=' if closed_low else '>'} {low:g}"
    return f"in {interval}"


def in_range(value, interval: str) -> bool:
    """``value`` is a finite real number (not a bool) inside ``interval``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    closed_low, low, high, closed_high = parse_range(interval)
    return (low <= value if closed_low else low < value) and (value <= high if closed_high else value < high)


def declared_ranges(cls) -> dict[str, str]:
    """Field -> allowed range of config class ``cls``: the ``range`` metadata of its fields, plus ``INHERITED_RANGES``
    (a class attribute) for fields it inherits from transformers / TRL. The one declaration validation and the
    bad-value tests read."""
    own = {f.name: f.metadata["range"] for f in dataclasses.fields(cls) if "range" in f.metadata}
    return {**getattr(cls, "INHERITED_RANGES", {}), **own}


def own_fields(cls) -> list[str]:
    """The fields eksft's classes declare in config dataclass ``cls`` (itself and its eksft bases, such as
    ``eksft.jobs.config.RunConfig``), in field order; not the ones it inherits from transformers / TRL, which check
    their own choices."""
    declared = {n for k in cls.__mro__ if k.__module__.startswith("eksft") for n in vars(k).get("__annotations__", {})}
    return [f.name for f in dataclasses.fields(cls) if f.name in declared]


@functools.cache
def _nullable(cls) -> frozenset[str]:
    """The fields of ``cls`` annotated ``X | None`` (SFTConfig's ``max_length``: None = no truncation)."""
    return frozenset(n for n, kind in get_type_hints(cls).items() if type(None) in typing.get_args(kind))


def check_fields(cfg, owner: str | None = None) -> None:
    """Each field of dataclass ``cfg`` that declares ``choices`` (its own fields) or a range (:func:`declared_ranges`)
    holds an allowed value (None where the field's default is None or its type allows it); else one ValueError
    naming ``owner.field`` (default: the class name), what is allowed and the value. Call it first in
    ``__post_init__`` / ``validate``."""
    owner = owner or type(cfg).__name__
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    own = own_fields(type(cfg))
    check_choices(cfg, *(n for n in own if "choices" in fields[n].metadata), owner=owner)
    for name, interval in declared_ranges(type(cfg)).items():
        value, nullable = getattr(cfg, name), fields[name].default is None or name in _nullable(type(cfg))
        if not (value is None and nullable) and not in_range(value, interval):
            unset = " or unset (null)" if nullable else ""
            number = in_range(value, "(-inf, inf)")  # a finite number, only outside the range
            what = range_text(interval) if number else f"a finite number {range_text(interval)}"
            raise ValueError(f"{owner}.{name}: must be {what}{unset}, got {value!r}.")


def _type_text(kind) -> str:
    """An annotation in words: ``int`` -> ``a whole number``, ``list[int] | None`` -> ``a list of whole numbers or
    null``."""
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_text(a) for a in args)
    if typing.get_origin(kind) is list:
        return f"a list of {_type_text(args[0]).removeprefix('a ').removeprefix('an ')}s" if args else "a list"
    if typing.get_origin(kind) is dict or kind is dict:
        return "a mapping"
    names = {int: "a whole number", float: "a number", bool: "true or false", str: "a string"}
    return names.get(kind, f"a {getattr(kind, '__name__', kind)}")


def _has_type(value, kind) -> bool:
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return any(_has_type(value, a) for a in args)
    if kind is type(None):
        return value is None
    if typing.get_origin(kind) is list:
        return (
            isinstance(value, list) and all(_has_type(v, args[0]) for v in value) if args else isinstance(value, list)
        )
    if typing.get_origin(kind) is dict:
        return isinstance(value, dict)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind) if isinstance(kind, type) else True


def check_types(cfg, owner: str | None = None) -> None:
    """Each field of dataclass ``cfg`` holds a value of its annotated type (``int``, ``float``, ``bool``, ``str``,
    ``list[...]``, ``dict``, ``X | None``): for configs built from YAML mappings, whose values nothing converts; else
    one ValueError naming ``owner.field`` (default: the class name), the type and the value."""
    owner = owner or type(cfg).__name__
    hints = get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if not _has_type(value, hints[f.name]):
            raise ValueError(f"{owner}.{f.name}: must be {_type_text(hints[f.name])}, got {value!r}.")


@functools.cache
def _unique_key_loader():
    import yaml

    class Loader(yaml.SafeLoader):
        """SafeLoader that refuses a key given twice in one mapping (YAML would silently keep the last value)."""

        def construct_mapping(self, node, deep=False):
            seen = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"key {key!r} is given twice (lines {seen[key]} and {line}); keep one of them",
                        key_node.start_mark,
                    )
                seen[key] = line
            return super().construct_mapping(node, deep)

    return Loader


def add_field_arguments(p: argparse.ArgumentParser, cls) -> None:
    """Every field of the config dataclass ``cls`` as a flag, with HfArgumentParser's typing rules."""
    from transformers import HfArgumentParser

    hints, ranges = get_type_hints(cls), declared_ranges(cls)
    first = len(p._actions)
    for f in dataclasses.fields(cls):
        if f.init:
            f.type = hints[f.name]
            HfArgumentParser._parse_dataclass_field(p, _flag_field(f, ranges.get(f.name)))
    # Flags only override what they name: defaults move into the help text and argparse leaves absent flags out
    # of the namespace, so the YAML's values survive.
    for action in p._actions[first:]:
        if action.default is not argparse.SUPPRESS and action.help is not argparse.SUPPRESS:
            action.help = f"{action.help or ''} (default: {action.default})".replace("%", "%%")
        action.default = argparse.SUPPRESS


def _flag_field(f: dataclasses.Field, interval: str | None) -> dataclasses.Field:
    """``f`` as ``HfArgumentParser`` takes it (which passes every metadata key to ``add_argument``): without the
    ``range`` key, the range said in the help instead."""
    if interval is None:
        return f
    flag = copy.copy(f)
    metadata = {k: v for k, v in f.metadata.items() if k != "range"}
    metadata["help"] = f"{metadata.get('help', '')} Allowed: {range_text(interval)}.".strip()
    flag.metadata = types.MappingProxyType(metadata)
    return flag


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
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - known)
    if unknown:
        hints = "".join(f" ({RENAMED[k]})" for k in unknown if k in RENAMED)
        raise ValueError(
            f"{where}: unknown field(s) {unknown} for {cls.__name__}{hints}; `{command} --help` lists every field."
        )
    return cls(**_numbers(values, cls))  # what HfArgumentParser.parse_dict does once the keys are known


def _numbers(values: dict, cls) -> dict:
    """``values`` with each string given to an ``int`` / ``float`` / ``bool`` field converted as its flag would be:
    YAML 1.1 reads ``1e-5`` (no dot) as a string, which nothing else converts. A string that is no number stays, and
    the field's range check names it; one that is no bool (``"false"`` would be true) is an error naming the field."""
    hints, out = get_type_hints(cls), dict(values)
    for key, value in values.items():
        kind = hints.get(key)
        kind = next((a for a in typing.get_args(kind) if a is not type(None)), kind) if typing.get_args(kind) else kind
        if isinstance(value, str) and kind in (int, float):
            try:
                out[key] = kind(value)
            except ValueError:
                pass
        elif isinstance(value, str) and kind is bool and str not in typing.get_args(hints[key]):
            from transformers.hf_argparser import string_to_bool

            try:
                out[key] = string_to_bool(value)
            except argparse.ArgumentTypeError:
                raise ValueError(f"{cls.__name__}.{key}: must be true or false, got {value!r}.") from None
    return out


def config_from_file(path: str | None, overrides: dict | None, cls, command: str):
    """YAML (with includes) + flag overrides -> ``cls``."""
    values = load_yaml(path) if path else {}
    values.update(overrides or {})
    return config_from_values(values, cls, where=path or "flags", command=command)


def flag_overrides(args: argparse.Namespace, cli_only=("config",)) -> dict:
    """The config fields given as flags (absent flags are not in the namespace)."""
    return {k: v for k, v in vars(args).items() if k not in cli_only and not k.startswith("_") and k != "command"}
