"""Paired comparison of two models on the same problems: B − A with a paired bootstrap interval over problems.

Each bootstrap resample draws the problems once and scores both models on that draw (the same resample indices as
:mod:`eksft.eval.intervals`), so problem difficulty, shared by both models, cancels out of the difference.
The report gives, per metric, the difference of the means, its 95% percentile interval, and the share of resamples
in which B scored strictly higher than A.

Library use (the demo and pipeline reports call these)::

    from eksft.eval.compare import paired_difference, difference_sentence
    d = paired_difference(per_problem_sft, per_problem_eksft, k=32)   # per problem: (n, c) pairs or {id: (n, c)}
    difference_sentence(d, "SFT", "EKSFT")
    # 'EKSFT − SFT on pass@32: +4.1 points, 95% interval [−2.0, +10.3]: not distinguishable at this size (30 problems).'

``eksft compare RESULTS_A RESULTS_B`` (eksft/commands/compare.py) reads two ``eksft eval`` folders with
:func:`load_result` and refuses to pair them (:func:`check_pairable`) when problems or sampling settings differ.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .intervals import LEVEL, RESAMPLES, Interval, pass_at_k_values, percentile_interval, resample_counts, seed_interval


@dataclass
class PairedDifference:
    """B − A on one metric. Values are fractions (multiply by 100 for points)."""

    metric: str  # e.g. "pass@32"
    mean_a: float  # A's mean over problems
    mean_b: float
    difference: float  # b - a
    low: float  # percentile interval of the resampled differences
    high: float
    share_b_greater: float  # share of resamples with B strictly above A
    num_problems: int
    resamples: int
    seed: int
    level: float = LEVEL

    @property
    def distinguishable(self) -> bool:
        """True when the interval excludes 0."""
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict:
        return {**asdict(self), "distinguishable": self.distinguishable}


def _align(per_problem_a, per_problem_b) -> tuple[list, list]:
    """Two per-problem tables in the same problem order: maps are matched by key, sequences by position."""
    if isinstance(per_problem_a, Mapping) != isinstance(per_problem_b, Mapping):
        raise ValueError("give both per-problem tables as {problem_id: ...} maps or both as aligned sequences")
    if isinstance(per_problem_a, Mapping):
        ka, kb = set(per_problem_a), set(per_problem_b)
        if ka != kb:
            raise ValueError(f"the two models were scored on different problems: {_set_difference(ka, kb)}")
        keys = list(per_problem_a)
        return [per_problem_a[k] for k in keys], [per_problem_b[k] for k in keys]
    a, b = list(per_problem_a), list(per_problem_b)
    if len(a) != len(b):
        raise ValueError(f"the two per-problem tables have {len(a)} and {len(b)} problems; pairing needs the same")
    return a, b


def _set_difference(a: set, b: set, what: str = "problem") -> str:
    only_a, only_b = sorted(map(str, a - b)), sorted(map(str, b - a))
    parts = []
    for side, only in (("A", only_a), ("B", only_b)):
        if only:
            shown = ", ".join(only[:3]) + (f" and {len(only) - 3} more" if len(only) > 3 else "")
            parts.append(f"{len(only)} {what}(s) only in {side} ({shown})")
    return "; ".join(parts)


def paired_values_difference(
    values_a, values_b, metric: str, *, resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL
) -> PairedDifference:
    """Paired bootstrap of mean(values_b) − mean(values_a) over aligned per-problem values (any per-problem metric)."""
    va, vb = np.asarray(values_a, dtype=float), np.asarray(values_b, dtype=float)
    if va.shape != vb.shape or va.ndim != 1:
        raise ValueError(f"per-problem values must be two vectors of one length, got {va.shape} and {vb.shape}")
    counts = resample_counts(len(va), resamples, seed)
    ra, rb = counts @ va / len(va), counts @ vb / len(vb)
    diffs = rb - ra
    lo, hi = percentile_interval(diffs, level)
    return PairedDifference(
        metric,
        float(va.mean()),
        float(vb.mean()),
        float(vb.mean() - va.mean()),
        float(lo),
        float(hi),
        float(np.mean(rb > ra)),
        len(va),
        resamples,
        seed,
        level,
    )


def paired_difference(
    per_problem_a, per_problem_b, k: int, *, resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL
) -> PairedDifference:
    """pass@k of B minus pass@k of A with a paired bootstrap interval over problems.

    ``per_problem_a``/``_b``: one ``(n, c)`` per problem (pairs or ``{"n", "c"}`` dicts) in the same problem order,
    or ``{problem_id: (n, c)}`` maps with the same keys. Each problem's unbiased pass@k is computed from its own
    ``(n, c)``; k must not exceed any n.
    """
    a, b = _align(per_problem_a, per_problem_b)
    return paired_values_difference(
        pass_at_k_values(a, k), pass_at_k_values(b, k), f"pass@{k}", resamples=resamples, seed=seed, level=level
    )


def _points(x: float, signed: bool = True) -> str:
    s = f"{100 * x:+.1f}" if signed else f"{100 * x:.1f}"
    return s.replace("-", "−")


def difference_sentence(diff: PairedDifference, label_a: str = "A", label_b: str = "B") -> str:
    """One plain sentence: 'EKSFT − SFT on pass@32: +4.1 points, 95% interval [−2.0, +10.3]: not distinguishable at
    this size (30 problems).'"""
    head = (
        f"{label_b} − {label_a} on {diff.metric}: {_points(diff.difference)} points, {diff.level:.0%} interval "
        f"[{_points(diff.low)}, {_points(diff.high)}]"
    )
    if diff.low > 0:
        verdict = (
            f"{label_b} higher (the interval excludes 0; {label_b} ahead in {diff.share_b_greater:.0%} of resamples)"
        )
    elif diff.high < 0:
        verdict = (
            f"{label_b} lower (the interval excludes 0; {label_b} ahead in {diff.share_b_greater:.0%} of resamples)"
        )
    else:
        verdict = f"not distinguishable at this size ({diff.num_problems} problems)"
    return f"{head}: {verdict}."


def seed_level_difference(diffs: Sequence[PairedDifference]) -> Interval:
    """Mean over seeds of per-seed differences B − A with the 95% Student-t interval across seeds."""
    return seed_interval([d.difference for d in diffs])


def seed_sentence(diffs: Sequence[PairedDifference], label_a: str = "A", label_b: str = "B") -> str:
    """'EKSFT − SFT on pass@32 over 3 seeds: +3.0 points, 95% t-interval [−1.2, +7.2]: not distinguishable.'"""
    iv = seed_level_difference(diffs)
    metric = diffs[0].metric
    head = f"{label_b} − {label_a} on {metric} over {len(diffs)} seeds: {_points(iv.estimate)} points"
    if iv.low is None:
        return head + " (one seed: no seed-level interval)."
    verdict = "not distinguishable" if iv.low <= 0 <= iv.high else f"{label_b} {'higher' if iv.low > 0 else 'lower'}"
    return f"{head}, 95% t-interval over seeds [{_points(iv.low)}, {_points(iv.high)}]: {verdict}."


# ---------------------------------------------------------------------------------------------------------------
# Result folders


#: Sampling settings two folders must share to be paired (``check_pairable(ignore=...)`` lifts one).
PAIRED_SETTINGS = ("n", "temperature", "top_p", "top_k", "max_new_tokens", "chat_template", "instruction", "extraction")


@dataclass
class ModelResult:
    """One model's per-problem table on every benchmark of an ``eksft eval`` folder."""

    folder: str
    model: str
    settings: dict  # PAIRED_SETTINGS values
    ks: list[int]
    per_problem: dict  # {benchmark: {problem_id: {"n", "c", ...}}}


def _settings(config: dict) -> dict:
    sampling = config.get("sampling", {})
    return {key: (config.get(key) if key == "extraction" else sampling.get(key)) for key in PAIRED_SETTINGS}


def _from_samples(folder: Path, model: str) -> dict:
    """Per-problem counts rebuilt from samples.jsonl (results.json from before per-problem tables were kept)."""
    out: dict = {}
    path = folder / "samples.jsonl"
    if not path.exists():
        raise ValueError(f"{folder}: results.json has no per-problem counts and there is no samples.jsonl")
    from eksft.text_files import jsonl_objects

    for _, r in jsonl_objects(path.read_text(), str(path), on_torn_last=lambda _: None):  # a torn line: not counted
        if r["model"] == model:
            row = out.setdefault(r["benchmark"], {}).setdefault(r["problem_id"], {"n": 0, "c": 0})
            row["n"] += 1
            row["c"] += int(bool(r["correct"]))
    return out


def _pick_model(models: list[str], wanted: str | None, folder: Path) -> str:
    if wanted is None:
        if len(models) != 1:
            raise ValueError(
                f"{folder} holds {len(models)} models ({', '.join(models)}); choose one with load_result.model"
            )
        return models[0]
    if wanted in models:
        return wanted
    by_part = [m for m in models if wanted in Path(m).parts]
    if len(by_part) == 1:
        return by_part[0]
    by_sub = [m for m in models if wanted in m]
    if len(by_sub) == 1:
        return by_sub[0]
    raise ValueError(
        f"model {wanted!r} matches {len(by_part) or len(by_sub)} of the models in {folder} "
        f"({', '.join(models)}); give the full name"
    )


def _with_check(rows: dict, check: str | None, extraction: str | None, folder: Path) -> dict:
    """Per-problem rows whose ``c`` counts the samples right under answer ``check`` (None: the run's own)."""
    if check is None or check == extraction:
        return rows
    key = f"c_{check}"
    if any(key not in r for r in rows.values()):
        raise ValueError(
            f"{folder}: no per-problem {check} counts (the run scored by {extraction}; runs before the "
            "per-sample checks were stored lack them): rescore samples.jsonl with eksft.eval.rescore"
        )
    return {pid: {**r, "c": r[key]} for pid, r in rows.items()}


def load_result(folder, model: str | None = None, check: str | None = None) -> ModelResult:
    """Read one model's per-problem ``(n, c)`` tables from an ``eksft eval`` output folder (``results.json``).

    ``check``: count the samples right under another stored answer check (``"last_number"``, ``"last_boxed"``)
    instead of the run's own (``EvalConfig.extraction``)."""
    folder = Path(folder)
    path = folder / "results.json"
    if not path.is_file():
        raise ValueError(f"{folder}: no results.json (is it an eksft eval output folder that finished?)")
    data = json.loads(path.read_text())
    config, results = data.get("config", {}), data.get("results", {})
    models = list(dict.fromkeys(m for per_model in results.values() for m in per_model))
    chosen = _pick_model(models, model, folder)
    per_problem = {}
    for bench, per_model in results.items():
        if chosen not in per_model:
            continue
        rows = per_model[chosen].get("per_problem")
        if rows is None:
            per_problem = _from_samples(folder, chosen)
            break
        per_problem[bench] = {r["id"]: r for r in rows}
    per_problem = {b: _with_check(rows, check, config.get("extraction"), folder) for b, rows in per_problem.items()}
    settings = _settings(config)
    if check is not None:
        settings["extraction"] = check
    return ModelResult(str(folder), chosen, settings, list(config.get("ks", [])), per_problem)


def check_pairable(a: ModelResult, b: ModelResult, ignore: Sequence[str] = ()) -> None:
    """Raise ValueError naming the first difference that makes pairing A and B meaningless."""
    ba, bb = set(a.per_problem), set(b.per_problem)
    if ba != bb:
        raise ValueError(f"the folders cover different benchmarks: {_set_difference(ba, bb, 'benchmark')}")
    for bench in a.per_problem:
        pa, pb = a.per_problem[bench], b.per_problem[bench]
        if set(pa) != set(pb):
            raise ValueError(f"benchmark {bench}: different problem sets: {_set_difference(set(pa), set(pb))}")
        odd = next(((p, pa[p]["n"], pb[p]["n"]) for p in pa if pa[p]["n"] != pb[p]["n"]), None)
        if odd:
            raise ValueError(
                f"benchmark {bench}: different samples per problem (problem {odd[0]}: n {odd[1]} in A, {odd[2]} in B)"
            )
    for key in PAIRED_SETTINGS:
        if key in ignore:
            continue
        va, vb = a.settings.get(key), b.settings.get(key)
        if va != vb:
            raise ValueError(
                f"different sampling settings: {key} is {va!r} in A ({a.folder}) and {vb!r} in B "
                f"({b.folder}); pass check_pairable.ignore {key} to pair them anyway"
            )


def compare_results(
    a: ModelResult,
    b: ModelResult,
    ks: Sequence[int],
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> dict:
    """``{benchmark: [PairedDifference per k, ...]}`` for two pairable results (see :func:`check_pairable`)."""
    out = {}
    for bench, pa in a.per_problem.items():
        ids = list(pa)  # A's problem order (the benchmark's): A's intervals match what eksft eval printed
        ta = [pa[i] for i in ids]
        tb = [b.per_problem[bench][i] for i in ids]
        n_min = min(r["n"] for r in ta + tb)
        bad = [k for k in ks if k > n_min]
        if bad:
            raise ValueError(f"compare_results.ks {bad} exceeds the {n_min} samples per problem of benchmark {bench}")
        out[bench] = [paired_difference(ta, tb, k, resamples=resamples, seed=seed, level=level) for k in ks]
    return out
