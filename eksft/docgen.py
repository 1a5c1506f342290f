"""Render the field tables of docs/training.md (``EKSFTConfig``) and docs/rl.md (``RLConfig``) from the dataclasses,
so the docs, ``--help`` and YAML keys share one text: ``python -m eksft.docgen train > /tmp/fields.md`` (or ``rl``).
A table lists the fields eksft declares (``config_io.own_fields``: its own, ``eksft.jobs.config.RunConfig``'s, and
the TRL fields it redeclares with another default or meaning), not the ones it inherits unchanged."""

from __future__ import annotations

import dataclasses
import sys

from eksft.config_io import own_fields, range_text


def config_class(command: str):
    """The config class of ``eksft train`` or ``eksft rl``."""
    if command == "train":
        from eksft.train.config import EKSFTConfig

        return EKSFTConfig
    if command == "rl":
        from eksft.rl.config import RLConfig

        return RLConfig
    raise ValueError(f"docgen: {command!r}; choose train or rl.")


def field_table(command: str = "train") -> str:
    cls = config_class(command)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    rows = ["| field | default | meaning |", "|---|---|---|"]
    for name in own_fields(cls):
        f = fields[name]
        help_text = f.metadata.get("help", "").replace("|", "\\|")
        choices = f.metadata.get("choices")
        if choices:
            help_text += f" Choices: {', '.join(map(str, choices))}."
        if "range" in f.metadata:
            help_text += f" Allowed: {range_text(f.metadata['range'])}."
        rows.append(f"| `{f.name}` | `{f.default!r}` | {help_text} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(field_table(*sys.argv[1:2]))
