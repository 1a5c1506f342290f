"""95% intervals for evaluation numbers: a bootstrap over problems, and a Student-t interval over seeds.

**Bootstrap over problems** (one run): the benchmark's problems are drawn with replacement ``resamples`` times; each
resample's metric is the mean of the resampled problems' own estimates (for pass@k the per-problem unbiased
estimate from its ``(n, c)``, so every problem keeps its n samples). The interval is the 2.5 / 97.5 percentiles of
the resampled means (numpy's default linear interpolation). The draws come from ``numpy.random.default_rng(seed)``
as one ``(resamples, problems)`` index array, so a fixed seed reproduces the interval exactly, and two models
evaluated on the same problems with the same seed get the same resamples (the paired comparison relies on it).

**Seed-level t-interval** (several runs, e.g. training seeds): mean ± t_{0.975, m-1} · sd / sqrt(m) over the m
per-seed numbers (:func:`mean_ci`; the demo reports every number this way).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .metrics import pass_at_k

#: Resamples and seed of every bootstrap ``eksft eval`` and ``eksft compare`` report unless told otherwise.
RESAMPLES = 2000
LEVEL = 0.95

# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom (standard table values); above 30 the
# normal 1.96 is within 2%.
T975 = [
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
]


def mean_ci(values: list[float]) -> tuple[float, float | None]:
    """(mean, half-width of the 95% t interval); the half-width is None with fewer than 2 values (None values are
    skipped)."""
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return float("nan"), None
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, None
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))
    t = T975[len(xs) - 2] if len(xs) - 1 <= len(T975) else 1.96
    return m, t * sd / math.sqrt(len(xs))


@dataclass
class Interval:
    """A point estimate with its 95% interval; ``method`` says which interval (for headers and JSON)."""

    estimate: float
    low: float | None
    high: float | None
    method: str

    def as_list(self) -> list[float | None]:
        return [self.low, self.high]


def seed_interval(values: Sequence[float]) -> Interval:
    """Mean over seeds with its 95% Student-t interval (``low``/``high`` None with fewer than two seeds)."""
    m, h = mean_ci(list(values))
    n = len([v for v in values if v is not None])
    method = f"Student-t over {n} seeds"
    return Interval(m, None, None, method) if h is None else Interval(m, m - h, m + h, method)


def resample_counts(num_problems: int, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """``(resamples, num_problems)`` matrix: how often each problem is drawn in each bootstrap resample.

    The draws are ``default_rng(seed).integers(0, P, size=(resamples, P))``, row by row; the counts let one matrix
    product give every metric's resampled means at once.
    """
    if num_problems < 1:
        raise ValueError("no problems to bootstrap over")
    if resamples < 1:
        raise ValueError(f"resamples={resamples}: need at least one")
    idx = np.random.default_rng(seed).integers(0, num_problems, size=(resamples, num_problems))
    flat = (np.arange(resamples)[:, None] * num_problems + idx).ravel()
    return np.bincount(flat, minlength=resamples * num_problems).reshape(resamples, num_problems)


def bootstrap_means(values, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """Resampled means of per-problem ``values`` (``(P,)`` or ``(P, M)`` for M metrics at once):
    ``(resamples,)`` or ``(resamples, M)``."""
    v = np.asarray(values, dtype=float)
    counts = resample_counts(v.shape[0], resamples, seed)
    return counts @ v / v.shape[0]


def percentile_interval(stats: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """The (1 - level)/2 and (1 + level)/2 percentiles of resampled statistics along axis 0."""
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return lo, hi


def bootstrap_method(num_problems: int, resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL) -> str:
    return (
        f"{level:.0%} bootstrap percentile interval over the {num_problems} problems "
        f"({resamples} resamples, seed {seed})"
    )


def bootstrap_interval(values, *, resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL) -> Interval:
    """Mean of per-problem ``values`` with its bootstrap interval over problems."""
    v = np.asarray(values, dtype=float)
    lo, hi = percentile_interval(bootstrap_means(v, resamples, seed), level)
    return Interval(float(v.mean()), float(lo), float(hi), bootstrap_method(len(v), resamples, seed, level))


def as_counts(per_problem) -> list[tuple[int, int]]:
    """``(n, c)`` pairs from a list of pairs, a list of ``{"n", "c"}`` dicts or a ``{problem_id: (n, c)}`` map."""
    items = per_problem.values() if isinstance(per_problem, Mapping) else per_problem
    out = []
    for item in items:
        n, c = (item["n"], item["c"]) if isinstance(item, Mapping) else item
        out.append((int(n), int(c)))
    return out


def pass_at_k_values(per_problem, k: int) -> np.ndarray:
    """Per-problem unbiased pass@k estimates, ``(P,)``."""
    return np.array([pass_at_k(n, c, k) for n, c in as_counts(per_problem)])


def pass_at_k_interval(
    per_problem, k: int, *, resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL
) -> Interval:
    """pass@k (mean of the per-problem unbiased estimates) with its bootstrap interval over problems."""
    return bootstrap_interval(pass_at_k_values(per_problem, k), resamples=resamples, seed=seed, level=level)
