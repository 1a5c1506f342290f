"""Mean and 95% confidence interval over seeds (Student's t, :mod:`eksft.eval.intervals`), the way the demo reports
every number."""

from __future__ import annotations

import math

# The t-interval lives with the other evaluation intervals; re-exported here so the demo's imports keep working.
from eksft.eval.intervals import T975, mean_ci

__all__ = ["T975", "mean_ci", "fmt", "compare"]


def fmt(values: list[float], digits: int = 3) -> str:
    m, h = mean_ci(values)
    if math.isnan(m):
        return "–"
    return f"{m:.{digits}f}" if h is None else f"{m:.{digits}f} ± {h:.{digits}f}"


def compare(a: list[float], b: list[float]) -> str:
    """'higher', 'lower' or 'indistinguishable' for mean(a) vs mean(b): with several seeds, 'indistinguishable'
    when the 95% intervals of the two means overlap; with one seed, by the sign of the difference only."""
    ma, ha = mean_ci(a)
    mb, hb = mean_ci(b)
    if math.isnan(ma) or math.isnan(mb):
        return "not comparable"
    if ha is not None and hb is not None and abs(ma - mb) <= ha + hb:
        return "indistinguishable"
    if ma == mb:
        return "equal"
    return "higher" if ma > mb else "lower"
