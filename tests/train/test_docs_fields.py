"""docs/training.md's EKSFT field table is exactly what ``eksft.train.docgen`` renders from ``EKSFTConfig`` (so the
docs, ``--help`` and YAML keys share one text). CPU, no model, about a second."""

import os

from eksft.train.docgen import field_table

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_training_docs_field_table_is_generated():
    with open(os.path.join(ROOT, "docs", "training.md"), encoding="utf-8") as f:
        text = f.read()
    assert field_table() in text, "regenerate the table: python -m eksft.train.docgen (see docs/training.md)"


def test_config_docstring_names_every_eksft_field():
    """EKSFTConfig's class docstring (TRL-style "Parameters") names each field eksft adds to SFTConfig."""
    import dataclasses
    import re

    from trl import SFTConfig

    from eksft.train import EKSFTConfig

    inherited = {f.name for f in dataclasses.fields(SFTConfig)} - {"loss_type", "bf16"}
    named = set(re.findall(r"\b([a-z][a-z0-9_]+)\b", EKSFTConfig.__doc__))
    missing = [f.name for f in dataclasses.fields(EKSFTConfig) if f.name not in inherited and f.name not in named]
    assert not missing, f"add to EKSFTConfig's docstring: {missing}"
