"""Render the EKSFT field table of docs/training.md from the dataclass, so the docs, ``--help`` and YAML keys share
one text: ``python -m eksft.train.docgen > /tmp/fields.md``."""

from __future__ import annotations

import dataclasses

from trl import SFTConfig

from eksft.config_io import range_text

from .config import EKSFTConfig


def field_table() -> str:
    inherited = {f.name for f in dataclasses.fields(SFTConfig)}
    rows = ["| field | default | meaning |", "|---|---|---|"]
    for f in dataclasses.fields(EKSFTConfig):
        if f.name in inherited and f.name not in ("loss_type", "bf16"):
            continue
        help_text = f.metadata.get("help", "").replace("|", "\\|")
        choices = f.metadata.get("choices")
        if choices:
            help_text += f" Choices: {', '.join(map(str, choices))}."
        if "range" in f.metadata:
            help_text += f" Allowed: {range_text(f.metadata['range'])}."
        rows.append(f"| `{f.name}` | `{f.default!r}` | {help_text} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(field_table())
