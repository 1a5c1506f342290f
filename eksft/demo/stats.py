"""Mean and 95% confidence interval over seeds (Student's t), the way the demo reports every number."""

from __future__ import annotations

import math

# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom (standard table values); above 30 the
# normal 1.96 is within 2%.
T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]  # fmt: skip


def mean_ci(values: list[float]) -> tuple[float, float | None]:
    """(mean, half-width of the 95% t interval); the half-width is None with fewer than 2 values."""
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return float("nan"), None
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, None
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))
    t = T975[len(xs) - 2] if len(xs) - 1 <= len(T975) else 1.96
    return m, t * sd / math.sqrt(len(xs))


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
