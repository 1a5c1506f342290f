"""The demo's verdicts: each claim the paper makes about EKSFT against SFT, as a difference with a 95% interval.

One seed: a paired bootstrap over what was measured (problems for pass@k, held-out solutions for entropy and KL);
several seeds: the Student-t interval over the per-seed differences. A claim is *supported* when the interval lies
on the claimed side of 0, *refuted* when it lies on the other side, and otherwise the run *cannot tell*.
"""

from __future__ import annotations

import numpy as np

from eksft.eval.compare import paired_difference
from eksft.eval.intervals import LEVEL, RESAMPLES, percentile_interval, resample_counts, seed_interval

from .config import BASE

#: (claim, what is compared, unit, the sign the paper claims for method - SFT)
CLAIMS = [
    ("keeps entropy", "held-out entropy", "nats/token", 1),
    ("stays closer to the base model", "held-out KL to base", "nats/token", -1),
    ("drifts less", "parameters changed > 1e-3", "share", -1),
    ("matches or beats pass@1", "pass@1", "points", 1),
    ("beats pass@k at the largest k", "pass@{n}", "points", 1),
]


def weighted_interval(values, weights, resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """Bootstrap over items of the weighted mean sum(w v) / sum(w) (held-out solutions weighted by their tokens,
    the way the point estimate is formed)."""
    v, w = np.asarray(values, float), np.asarray(weights, float)
    r = resample_counts(len(v), resamples, seed)
    lo, hi = percentile_interval((r @ (v * w)) / (r @ w), LEVEL)
    return float(lo), float(hi)


def weighted_paired(a, b, weights, resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, float, float]:
    """Weighted mean of b minus that of a over the same items, with a paired bootstrap interval over items."""
    va, vb, w = (np.asarray(x, float) for x in (a, b, weights))
    r = resample_counts(len(w), resamples, seed)
    diffs = (r @ ((vb - va) * w)) / (r @ w)
    lo, hi = percentile_interval(diffs, LEVEL)
    return float(((vb - va) * w).sum() / w.sum()), float(lo), float(hi)


def _seed_difference(seed: dict, what: str, method: str, ref: str) -> tuple[float, float | None, float | None]:
    """(difference, low, high) for one seed; low/high None where that seed has nothing to resample."""
    n = seed["eval"][ref]["n"]
    if what.startswith("pass@"):
        k = n if what == "pass@{n}" else int(what.split("@")[1])
        d = paired_difference(seed["eval"][ref]["per_problem"], seed["eval"][method]["per_problem"], k)
        return d.difference, d.low, d.high
    if what.startswith("held-out"):
        key = "entropy" if "entropy" in what else "kl"
        pa, pb = seed["heldout"][ref]["per_solution"], seed["heldout"][method]["per_solution"]
        return weighted_paired(pa[key], pb[key], pa["tokens"])
    drift = seed.get("drift") or {}
    a, b = (drift.get(m, {}).get("0.001") for m in (ref, method))
    return (None, None, None) if a is None or b is None else (b - a, None, None)


def claim_difference(summary: dict, what: str, method: str, ref: str = "sft") -> dict | None:
    """{estimate, low, high, interval} of method - ref on ``what`` over the run's seeds (None: not measured)."""
    seeds = summary["seeds"]
    try:
        per_seed = [_seed_difference(s, what, method, ref) for s in seeds]
    except (KeyError, TypeError):
        return None
    if any(d[0] is None for d in per_seed):
        return None
    if len(seeds) >= 2:
        iv = seed_interval([d[0] for d in per_seed])
        return {"estimate": iv.estimate, "low": iv.low, "high": iv.high, "interval": iv.method}
    d, lo, hi = per_seed[0]
    kind = (
        "paired bootstrap over problems"
        if what.startswith("pass@")
        else "paired bootstrap over held-out solutions"
        if what.startswith("held-out")
        else "one seed: no interval"
    )
    return {"estimate": d, "low": lo, "high": hi, "interval": kind}


def verdict(diff: dict, sign: int) -> str:
    if diff["low"] is None:
        return "cannot tell (no interval)"
    if diff["low"] > 0 or diff["high"] < 0:
        return "supported" if (diff["low"] > 0) == (sign > 0) else "refuted"
    return "cannot tell (the interval contains 0)"


def _num(x: float, unit: str) -> str:
    return f"{100 * x:+.1f}" if unit == "points" else f"{x:+.3f}"


def claim_sentences(
    summary: dict, titles: dict[str, str], ref: str = "sft", methods: list[str] | None = None, start: str = BASE
) -> list[str]:
    """One sentence per (method, claim) for every trained method (or each of ``methods``) other than ``ref``;
    ``start``: the label of the model training started from (the "base" of "KL to base")."""
    labels = [m for m in (methods or summary["seeds"][0]["runs"]) if m != ref]
    n = summary["config"]["samples"]
    out = []
    for m in labels:
        for claim, what, unit, sign in CLAIMS:
            d = claim_difference(summary, what, m, ref)
            name = what.replace("{n}", str(n))
            if start != BASE:  # the self data regime: training continued from the warm start
                claim = claim.replace("the base model", f"the {start} model")
                name = name.replace("KL to base", f"KL to {start}")
            if d is None:
                continue
            interval = (
                ""
                if d["low"] is None
                else (f", 95% interval [{_num(d['low'], unit)}, {_num(d['high'], unit)}] ({d['interval']})")
            )
            out.append(
                f"{titles.get(m, m)} {claim} ({name}, {m} − {ref}): {_num(d['estimate'], unit)} {unit}"
                f"{interval}: {verdict(d, sign)}."
            )
    return out
