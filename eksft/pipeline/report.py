"""The pipeline's report: two tables in the paper's layout (stage 1: after SFT, stage 2: after RL), one row per
method, pass@1 (= avg@n) and pass@K per benchmark and their average, in percent; ``report.json`` with the same
numbers (fractions) and the stage times; pass@k plots with one curve per method.

K is 32 (the paper's pass@32) or, with fewer samples, the largest k in ``eval.ks`` (EvalSettings.table_k); the
header says which. A stage that has not run shows ``-``. Every per-benchmark cell carries its 95% bootstrap interval
over problems (from ``eksft eval``), and each method is compared with SFT (or the first method) by a paired
bootstrap over the same problems: the report's sentences state the difference and its interval, not point estimates.
What RL did to each method is a third comparison: after SFT -> RL minus after SFT, paired over the same problems.
``rl_curves.png`` plots each method's RL stage from its metrics.jsonl: accuracy reward, policy entropy and the share
of drawn groups that dynamic sampling could keep (groups with reward variance).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from eksft.eval.benchmarks import benchmark_name

from .config import STAGES
from .layout import DONE, is_done, stage_dir

STAGE_TITLES = {"sft_eval": "Stage 1: after SFT", "rl_eval": "Stage 2: after SFT -> RL (DAPO)"}


def _read_json(path: str) -> dict | None:
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def collect(pc, stage: str) -> dict:
    """``{method: {benchmark: summary}}`` of the finished evaluations of ``stage`` (sft_eval or rl_eval)."""
    out = {}
    for method in pc.methods:
        folder = stage_dir(pc, method, stage)
        data = _read_json(os.path.join(folder, "results.json")) if is_done(folder) else None
        if data is None:
            continue
        # eksft eval keys results by model path; the pipeline evaluates one model per folder.
        out[method] = {bench: next(iter(per_model.values())) for bench, per_model in data["results"].items()}
    return out


def stage_rows(pc, results: dict) -> dict:
    """``{method: {"benchmarks": {bench: {pass@1, pass@K}}, "average": {...}}}``, fractions in [0, 1]."""
    k = pc.eval.table_k
    keys = ("pass@1", f"pass@{k}")
    rows = {}
    for method, per_bench in results.items():
        benches = {
            b: {
                **{key: s.get(key) for key in keys},
                **{f"{key}_interval": (s.get("intervals") or {}).get(key) for key in keys},
            }
            for b, s in per_bench.items()
        }
        average = {key: sum(v[key] for v in benches.values()) / len(benches) for key in keys} if benches else {}
        rows[method] = {"benchmarks": benches, "average": average}
    return rows


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _pct_iv(cell: dict, key: str) -> str:
    """'12.5 [8.0, 17.0]' (percent, 95% bootstrap interval over problems) or the bare value without an interval."""
    value, iv = cell.get(key), cell.get(f"{key}_interval")
    if value is None or not iv:
        return _pct(value)
    return f"{100 * value:.1f} [{100 * iv[0]:.1f}, {100 * iv[1]:.1f}]"


def paired_differences(pc, bench: str, base: dict | None, summary: dict, names: tuple[str, str], pair: str, key: dict):
    """pass@1 and pass@K of ``summary`` minus ``base`` on one benchmark, paired bootstrap over the problems both were
    evaluated on: the JSON records (``benchmark``, then ``key``, then the difference) and one sentence each, where
    ``names`` are (base, summary) as the sentences say them. Nothing when either lacks per-problem counts; one
    "``pair`` not compared" sentence when the problems differ or there are too few samples."""
    from eksft.eval.compare import difference_sentence, paired_difference

    records, text = [], []
    if not base or "per_problem" not in base or "per_problem" not in summary:
        return records, text
    a = {p["id"]: (p["n"], p["c"]) for p in base["per_problem"]}
    b = {p["id"]: (p["n"], p["c"]) for p in summary["per_problem"]}
    for k in sorted({1, pc.eval.table_k}):
        try:
            d = paired_difference(a, b, k)
        except ValueError as e:  # different problems or too few samples: say so instead of comparing
            text.append(f"{bench}: {pair} not compared ({e}).")
            break
        records.append({"benchmark": bench, **key, **d.to_dict()})
        text.append(f"{bench}: " + difference_sentence(d, *names))
    return records, text


def comparisons(pc, results: dict) -> tuple[list[dict], list[str]]:
    """Each method against SFT (or the first method) on every benchmark, pass@1 and pass@K: paired bootstrap over
    the problems both were evaluated on. Returns the JSON records and one sentence each."""
    ref = "sft" if "sft" in results else next(iter(results), None)
    records, text = [], []
    if ref is None:
        return records, text
    for method, per_bench in results.items():
        if method == ref:
            continue
        for bench, summary in per_bench.items():
            key = {"method": method, "reference": ref}
            pair = f"{method} vs {ref}"
            r, t = paired_differences(pc, bench, results[ref].get(bench), summary, (ref, method), pair, key)
            records += r
            text += t
    return records, text


def rl_effects(pc, before: dict, after: dict) -> tuple[list[dict], list[str]]:
    """Each method after SFT -> RL against itself after SFT, pass@1 and pass@K, paired over the same problems."""
    records, text = [], []
    for method, per_bench in after.items():
        for bench, summary in per_bench.items():
            base = before.get(method, {}).get(bench)
            names = (f"{method} (SFT)", f"{method} (SFT -> RL)")
            pair = f"{method} after RL vs after SFT"
            r, t = paired_differences(pc, bench, base, summary, names, pair, {"method": method})
            records += r
            text += t
    return records, text


#: RL-stage curves: (title, y label, value of one metrics.jsonl record or None).
RL_PANELS = (
    ("accuracy reward (batch mean)", "share correct", lambda r: r.get("rewards/accuracy/mean")),
    ("policy entropy", "nats/token", lambda r: r.get("entropy")),
    ("dynamic sampling: groups with variance / drawn", "share", lambda r: variance_share(r)),
)


def variance_share(record: dict) -> float | None:
    """The share of drawn groups with reward variance (the groups dynamic sampling can keep) in one metrics record;
    None where the record has no dynamic-sampling metrics."""
    from eksft.rl.dynamic_sampling import GROUPS_DRAWN, GROUPS_WITH_VARIANCE  # imports torch: only when read

    return record[GROUPS_WITH_VARIANCE] / record[GROUPS_DRAWN] if record.get(GROUPS_DRAWN) else None


def rl_curves(pc) -> dict:
    """``{method: {panel title: [(step, value), ...]}}`` from each finished or running RL stage's metrics.jsonl."""
    from eksft.jobs.metrics import METRICS_FILE, read_metrics

    out = {}
    for method in pc.methods:
        folder = stage_dir(pc, method, "rl")
        if not os.path.isfile(os.path.join(folder, METRICS_FILE)):
            continue
        lines = [r for r in read_metrics(folder) if "step" in r and "train_runtime" not in r]
        curves = {title: [(r["step"], v) for r in lines if (v := get(r)) is not None] for title, _, get in RL_PANELS}
        if any(curves.values()):
            out[method] = curves
    return out


def plot_rl_curves(curves: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from eksft.eval.report import finish_step_figure

    fig, axes = plt.subplots(1, len(RL_PANELS), figsize=(4 * len(RL_PANELS), 3.4))
    for method, per_panel in curves.items():
        for ax, (title, _, _) in zip(axes, RL_PANELS):
            if per_panel[title]:
                ax.plot(*zip(*per_panel[title]), marker=".", label=method)
    return finish_step_figure(fig, axes, [(title, unit) for title, unit, _ in RL_PANELS], path)


def markdown_table(pc, rows: dict) -> str:
    k = pc.eval.table_k
    benches = [benchmark_name(b) for b in pc.eval.benchmarks]
    head = (
        ["Method"]
        + [f"{b} pass@1" for b in benches]
        + [f"{b} pass@{k}" for b in benches]
        + ["Average pass@1", f"Average pass@{k}"]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method in pc.methods:
        row = rows.get(method)
        cells = [method]
        for key in ("pass@1", f"pass@{k}"):
            cells += [_pct_iv(row["benchmarks"].get(b, {}), key) if row else "-" for b in benches]
        cells += [_pct(row["average"].get(key)) if row else "-" for key in ("pass@1", f"pass@{k}")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _stage_seconds(pc) -> dict:
    out = {}
    for method in pc.methods:
        for stage in STAGES:
            info = _read_json(os.path.join(stage_dir(pc, method, stage), DONE))
            if info:
                out.setdefault(method, {})[stage] = info.get("seconds")
    return out


def write_report(pc, out_dir: str) -> dict:
    """Write report.md, report.json and the pass@k plots; return the JSON content."""
    from eksft.eval.intervals import RESAMPLES  # what pipeline evaluations use (EvalConfig's default)
    from eksft.eval.report import plot_pass_at_k

    os.makedirs(out_dir, exist_ok=True)
    k = pc.eval.table_k
    report = {
        "k": k,
        "n": pc.eval.n,
        "benchmarks": [benchmark_name(b) for b in pc.eval.benchmarks],
        "methods": list(pc.methods),
        "seed": pc.seed,
        "stages": {},
        "seconds": _stage_seconds(pc),
    }
    md = [
        f"# EKSFT pipeline report: {os.path.basename(os.path.abspath(pc.output_dir))}",
        "",
        f"pass@1 (= avg@{pc.eval.n}) and pass@{k} in percent, unbiased estimator over n = {pc.eval.n} samples per "
        f"problem at temperature {pc.eval.temperature}, max {pc.eval.max_new_tokens} new tokens"
        + (f", first {pc.eval.limit} problems of each benchmark" if pc.eval.limit else "")
        + f"; seed {pc.seed}. "
        f"In brackets: 95% bootstrap interval over the benchmark's problems ({RESAMPLES:,} resamples); averages over "
        "benchmarks have none. One training seed: the intervals cover the problems and the sampling, not training "
        "noise.",
        "",
    ]
    report["comparisons"] = {}
    for stage, title in STAGE_TITLES.items():
        results = collect(pc, stage)
        rows = stage_rows(pc, results)
        report["stages"][stage] = rows
        md += [f"## {title}", "", markdown_table(pc, rows), ""]
        records, sentences = comparisons(pc, results)
        report["comparisons"][stage] = records
        if sentences:
            md += ["Paired differences (bootstrap over the same problems):", ""] + [f"- {x}" for x in sentences] + [""]
        if results:  # one figure per benchmark, one curve per method
            by_bench = {}
            for method, per_bench in results.items():
                for bench, summary in per_bench.items():
                    by_bench.setdefault(f"{bench} {stage.replace('_eval', '')}", {})[method] = summary
            plots = plot_pass_at_k(Path(out_dir), by_bench)
            md += [f"![{p.stem}]({p.name})" for p in plots] + [""]
    before, after = collect(pc, "sft_eval"), collect(pc, "rl_eval")
    records, sentences = rl_effects(pc, before, after)
    report["rl_effects"] = records
    if sentences:
        md += ["## What RL changed: after SFT -> RL minus after SFT, per method", ""]
        md += ["Paired differences (bootstrap over the same problems):", ""] + [f"- {x}" for x in sentences] + [""]
    curves = rl_curves(pc)
    report["rl_curves"] = curves
    if curves:
        plot = plot_rl_curves(curves, Path(out_dir, "rl_curves.png"))
        md += [
            "## RL stage curves",
            "",
            "Per logging step of each method's `rl/metrics.jsonl`: the accuracy reward of every drawn completion "
            "(before the dynamic-sampling filter, logged once per rollout batch), the policy entropy of the "
            "completions each update trains on, and the share of drawn groups with reward variance (the groups "
            "dynamic sampling can keep).",
            "",
            f"![rl curves]({plot.name})",
            "",
        ]
    md += masked_targets_markdown(pc)
    seconds = report["seconds"]
    if seconds:
        md += [
            "## Stage wall time (s)",
            "",
            "| Method | " + " | ".join(STAGES) + " |",
            "|---" * (len(STAGES) + 1) + "|",
        ]
        md += [f"| {m} | " + " | ".join(str(s.get(st, "-")) for st in STAGES) + " |" for m, s in seconds.items()]
    Path(out_dir, "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    Path(out_dir, "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def masked_targets_markdown(pc) -> list[str]:
    """Per method whose SFT stage masked targets: the ones most often kept out of cross-entropy
    (``<method>/sft/mask_targets.json``; eksft.analysis.masks)."""
    from eksft.analysis.masks import TARGETS_HEADER, read_targets, targets_note, targets_table

    md = []
    for method in pc.methods:
        targets = read_targets(stage_dir(pc, method, "sft"))
        if targets:
            md += [f"## Targets `{method}` kept out of cross-entropy in SFT", "", targets_note(targets), ""]
            md += ["| " + " | ".join(TARGETS_HEADER) + " |", "|" + "---|" * len(TARGETS_HEADER)]
            md += ["| " + " | ".join(row) + " |" for row in targets_table(targets)] + [""]
    return md
