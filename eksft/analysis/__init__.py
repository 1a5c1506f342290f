"""``eksft.analysis``: the paper's analyses as library functions behind ``eksft drift``, ``eksft probe`` and
``eksft masks`` (docs/evaluation.md)."""
