"""docs/training.md's EKSFT field table is exactly what ``eksft.train.docgen`` renders from ``EKSFTConfig`` (so the
docs, ``--help`` and YAML keys share one text). CPU, no model, about a second."""

import os

from eksft.train.docgen import field_table

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_training_docs_field_table_is_generated():
    with open(os.path.join(ROOT, "docs", "training.md"), encoding="utf-8") as f:
        text = f.read()
    assert field_table() in text, "regenerate the table: python -m eksft.train.docgen (see docs/training.md)"
