"""Config files and flags shared by the commands that take a TRL-style config (``eksft train``, ``eksft rl``, and the
stages of ``eksft pipeline``): YAML with ``include:``, one ``--flag`` per dataclass field, and the mapping -> config
step whose error names unknown keys. No heavy import at module level: ``eksft --help`` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
from typing import get_type_hints

#: Fields every training config accepts, set as plain attributes on a config class that does not declare them
#: (TRL's GRPOConfig has no overwrite_output_dir since transformers 5): name -> (default, help).
EXTRA_FIELDS = {
    "overwrite_output_dir": (
        False,
        "Start a new run in an output_dir that already holds one: its files "
        "are removed first. Without it such a folder is refused unless "
        "resume_from_checkpoint is set.",
    )
}
#: What people carry over from other trainers that transformers 5 does not have, and what to write instead.
RENAMED = {"warmup_ratio": "transformers 5 has no warmup_ratio: warmup_steps takes a fraction < 1"}


def load_yaml(path: str, seen: tuple[str, ...] = ()) -> dict:
    """A YAML mapping; ``include: base.yaml`` (relative to the file) is read first and overridden by the file."""
    import yaml

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


def not_utf8(path: str, raw: bytes, e: UnicodeDecodeError) -> str:
    """``FILE line L (byte B): not valid UTF-8 (0x..)`` for a decode error of the bytes ``raw`` of ``path``."""
    line = raw.count(b"\n", 0, e.start) + 1
    return f"{path} line {line} (byte offset {e.start}): not valid UTF-8 (byte 0x{raw[e.start]:02x})"


def read_utf8(path: str, where: str = "") -> str:
    """The text of ``path``; bytes that are not UTF-8 raise one ValueError naming the line and byte offset
    (``where`` is appended to the fix, e.g. the field the file came from)."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{not_utf8(path, raw, e)}; save the file as UTF-8{where}.") from None


def check_choices(cfg, *names: str) -> None:
    """Each named field of dataclass ``cfg`` holds one of its ``choices`` (field metadata); else a ValueError
    naming ``Class.field``, the value and the choices."""
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    for name in names:
        choices, value = list(fields[name].metadata["choices"]), getattr(cfg, name)
        if value not in choices:
            raise ValueError(f"{type(cfg).__name__}.{name}: {value!r}; choose one of {choices}.")


def jsonl_objects(text: str, where: str, error: type[Exception] = ValueError, on_torn_last=None):
    """``(line number, object)`` for each non-blank line of JSON Lines ``text``; a line that is not a JSON object
    raises ``error`` naming ``where`` and the line. ``on_torn_last(line number)``: a last line that is not valid
    JSON (cut short by a crash while it was appended) is skipped and reported to it instead."""
    import json

    lines = text.splitlines()
    last = max((i for i, line in enumerate(lines, 1) if line.strip()), default=0)
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            if on_torn_last is not None and lineno == last:
                on_torn_last(lineno)
                continue
            raise error(f"{where} line {lineno}: invalid JSON ({e.msg}); fix or delete the line.") from None
        if not isinstance(obj, dict):
            raise error(f"{where} line {lineno}: expected a JSON object, got {type(obj).__name__}.")
        yield lineno, obj


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

    hints = get_type_hints(cls)
    first = len(p._actions)
    for f in dataclasses.fields(cls):
        if f.init:
            f.type = hints[f.name]
            HfArgumentParser._parse_dataclass_field(p, f)
    if "overwrite_output_dir" not in {f.name for f in dataclasses.fields(cls)}:  # RLConfig: see EXTRA_FIELDS
        from transformers.hf_argparser import string_to_bool

        p.add_argument(
            "--overwrite_output_dir",
            type=string_to_bool,
            nargs="?",
            const=True,
            help=EXTRA_FIELDS["overwrite_output_dir"][1],
        )
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
    extra = {k: values[k] if k in values else default for k, (default, _) in EXTRA_FIELDS.items() if k not in known}
    values = {k: v for k, v in values.items() if k not in extra}
    unknown = sorted(set(values) - known)
    if unknown:
        hints = "".join(f" ({RENAMED[k]})" for k in unknown if k in RENAMED)
        raise ValueError(
            f"{where}: unknown field(s) {unknown} for {cls.__name__}{hints}; `{command} --help` lists every field."
        )
    (cfg,) = HfArgumentParser(cls).parse_dict(dict(values))
    for k, v in extra.items():
        if isinstance(v, str):
            from transformers.hf_argparser import string_to_bool

            v = string_to_bool(v)
        setattr(cfg, k, bool(v))
    return cfg


def config_from_file(path: str | None, overrides: dict | None, cls, command: str):
    """YAML (with includes) + flag overrides -> ``cls``."""
    values = load_yaml(path) if path else {}
    values.update(overrides or {})
    return config_from_values(values, cls, where=path or "flags", command=command)


def flag_overrides(args: argparse.Namespace, cli_only=("config",)) -> dict:
    """The config fields given as flags (absent flags are not in the namespace)."""
    return {k: v for k, v in vars(args).items() if k not in cli_only and not k.startswith("_") and k != "command"}
