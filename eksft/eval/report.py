"""Turn ``samples.jsonl`` lines into the numbers, tables and plots ``eksft eval`` writes (docs/evaluation.md)."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from .intervals import LEVEL, RESAMPLES, bootstrap_means, bootstrap_method, pass_at_k_values, percentile_interval
from .metrics import distinct_n, pass_at_k_mean

DISTINCT_NS = (1, 2, 3)
#: Per-sample answer checks stored in ``samples.jsonl`` besides the run's own ``correct``.
CHECKS = ("last_boxed", "last_number")


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def summarize(
    lines: list[dict],
    ks: list[int],
    *,
    resamples: int = RESAMPLES,
    bootstrap_seed: int = 0,
    extraction: str | None = None,
) -> dict:
    """Metrics of one model on one benchmark from its sample lines (every problem must have the same n).

    Besides the point estimates: ``per_problem`` (id, n, c and, per other answer check in the lines' ``checks``,
    ``c_<check>``), ``intervals`` (a bootstrap interval over problems for every per-problem metric, and the
    ``method`` used) and ``pass_at_k_band`` (the interval of every point of ``pass_at_k_curve``).
    """
    by_problem, n = _by_problem(lines)
    groups = list(by_problem.values())
    counts = [(n, sum(s["correct"] for s in group)) for group in groups]
    samples = [s for group in groups for s in group]
    # Other answer checks (a format failure vs a skill failure): those every sample carries, the run's own left out.
    others = [c for c in CHECKS if c != extraction and all(c in s.get("checks", {}) for s in samples)]
    per = _per_problem_values(groups, counts, n, ks, others)
    out = {"num_problems": len(groups), "n": n, **_point_estimates(per, counts, samples, n, ks, others)}
    out.update(_intervals(per, counts, n, resamples, bootstrap_seed))
    out["per_problem"] = [
        {"id": pid, "n": n, "c": c, **{f"c_{chk}": sum(s["checks"][chk] for s in g) for chk in others}}
        for pid, g, (_, c) in zip(by_problem, groups, counts)
    ]
    return out


def _by_problem(lines: list[dict]) -> tuple[dict, int]:
    """``{problem_id: lines}`` and the samples per problem, the same for every problem."""
    by_problem = defaultdict(list)
    for line in lines:
        by_problem[line["problem_id"]].append(line)
    ns = {len(v) for v in by_problem.values()}
    if len(ns) != 1:
        raise ValueError(f"problems have different sample counts {sorted(ns)}; pass@k needs the same n everywhere")
    return by_problem, ns.pop()


def _per_problem_values(groups: list, counts: list, n: int, ks: list[int], others: list[str]) -> dict[str, list]:
    """Per-problem values of every metric that is a mean over problems: their bootstrap gives the intervals."""
    per: dict[str, list] = {}
    for k in ks:
        per[f"pass@{k}"] = list(pass_at_k_values(counts, k))
    per[f"avg@{n}"] = [c / n for _, c in counts]
    for check in others:
        per[f"avg@{n}_{check}"] = [sum(s["checks"][check] for s in g) / n for g in groups]
    per["mean_response_tokens"] = [sum(s["num_tokens"] for s in g) / n for g in groups]
    per["truncated_fraction"] = [sum(s["truncated"] for s in g) / n for g in groups]
    per["no_answer_fraction"] = [sum(s["answer"] is None for s in g) / n for g in groups]
    # Diversity (paper section 1: SFT narrows the output distribution): answers, token entropy, n-gram variety.
    per["distinct_answers_per_problem"] = [len({s["answer"] for s in g if s["answer"] is not None}) for g in groups]
    problem_entropy = [_mean([s.get("mean_entropy") for s in g]) for g in groups]
    if all(e is not None for e in problem_entropy):
        per["mean_token_entropy"] = problem_entropy
    for d in DISTINCT_NS:
        per[f"distinct_{d}"] = [distinct_n([s["completion"] for s in g], d) for g in groups]
    return per


def _point_estimates(per: dict, counts: list, samples: list, n: int, ks: list[int], others: list[str]) -> dict:
    """The mean of every per-problem metric, in the summary's order (pass@k from the exact estimator)."""
    out = {key: sum(values) / len(values) for key, values in per.items()}
    for k in ks:
        out[f"pass@{k}"] = pass_at_k_mean(counts, k)
    # sample-level mean (equal to the per-problem mean when every sample has an entropy; vLLM gives none)
    entropies = [s["mean_entropy"] for s in samples if s.get("mean_entropy") is not None]
    out["mean_token_entropy"] = sum(entropies) / len(entropies) if entropies else None
    order = [
        *(f"pass@{k}" for k in ks),
        f"avg@{n}",
        *(f"avg@{n}_{c}" for c in others),
        "mean_response_tokens",
        "truncated_fraction",
        "no_answer_fraction",
        "distinct_answers_per_problem",
        "mean_token_entropy",
        *(f"distinct_{d}" for d in DISTINCT_NS),
    ]
    return {key: out[key] for key in order}


def _intervals(per: dict, counts: list, n: int, resamples: int, seed: int) -> dict:
    """``pass_at_k_curve`` (k = 1..n), its ``pass_at_k_band`` and the ``intervals`` of every per-problem metric:
    one bootstrap over problems for all of them."""
    curve_ks = list(range(1, n + 1))
    curve = np.stack([pass_at_k_values(counts, k) for k in curve_ks], axis=1)  # (P, n)
    keys = list(per)
    table = np.concatenate([np.array([per[key] for key in keys], dtype=float).T, curve], axis=1)
    lo, hi = percentile_interval(bootstrap_means(table, resamples, seed), LEVEL)
    return {
        "pass_at_k_curve": {str(k): float(v) for k, v in zip(curve_ks, curve.mean(axis=0))},
        "pass_at_k_band": {
            str(k): [float(lo[len(keys) + i]), float(hi[len(keys) + i])] for i, k in enumerate(curve_ks)
        },
        "intervals": {
            "method": bootstrap_method(len(counts), resamples, seed, LEVEL),
            **{key: [float(lo[i]), float(hi[i])] for i, key in enumerate(keys)},
        },
    }


#: Keys of a summary that are not scalar metrics.
NON_SCALAR = ("pass_at_k_curve", "pass_at_k_band", "intervals", "per_problem")


def scalar_keys(results: dict) -> list[str]:
    """Metric names in a stable order, from the first model's summary (curves, intervals, tables left out)."""
    for per_model in results.values():
        for summary in per_model.values():
            return [k for k in summary if k not in NON_SCALAR]
    return []


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def _cell(summary: dict, key: str) -> str:
    iv = summary.get("intervals", {}).get(key)
    text = _fmt(summary.get(key))
    return f"{text} [{_fmt(iv[0])}, {_fmt(iv[1])}]" if iv else text


def interval_header(results: dict) -> str:
    """Which interval the brackets hold (one line, printed above the tables)."""
    methods = {s["intervals"]["method"] for pm in results.values() for s in pm.values() if "intervals" in s}
    if not methods:
        return "Point estimates only (these results carry no intervals)."
    return "In brackets: " + "; ".join(sorted(methods)) + "."


def side_by_side(results: dict) -> str:
    """One Markdown table per benchmark: metrics in rows, models in columns, 95% intervals in brackets."""
    blocks = [interval_header(results)]
    for bench, per_model in results.items():
        models = list(per_model)
        keys = [k for k in scalar_keys({bench: per_model})]
        rows = [f"### {bench}", "", "| metric | " + " | ".join(models) + " |", "|---" * (len(models) + 1) + "|"]
        for key in keys:
            rows.append(f"| {key} | " + " | ".join(_cell(per_model[m], key) for m in models) + " |")
        blocks.append("\n".join(rows))
    return "\n\n".join(blocks) + "\n"


def short_labels(models: list[str]) -> dict[str, str]:
    """Model path -> its last path part, or the whole path where two models share the last part."""
    from pathlib import PurePath

    short = {m: PurePath(m.rstrip("/")).name or m for m in models}
    if len(set(short.values())) < len(short):
        parts = {m: PurePath(m.rstrip("/")).parts for m in models}
        short = {m: "/".join(p[-2:]) for m, p in parts.items()}
    if len(set(short.values())) < len(short):
        short = {m: m for m in models}
    return short


def paired_comparisons(results: dict, ks: list[int], *, resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """Every model after the first against the first, per benchmark and k: ``{benchmark: [PairedDifference ...]}``
    (pairs problems by id; needs ``per_problem`` tables)."""
    from .compare import paired_difference

    out = {}
    for bench, per_model in results.items():
        models = list(per_model)
        if len(models) < 2 or any("per_problem" not in per_model[m] for m in models):
            continue
        base = {r["id"]: r for r in per_model[models[0]]["per_problem"]}
        diffs = []
        for other in models[1:]:
            mine = {r["id"]: r for r in per_model[other]["per_problem"]}
            for k in ks:
                d = paired_difference(base, mine, k, resamples=resamples, seed=seed)
                diffs.append({"model_a": models[0], "model_b": other, **d.to_dict()})
        out[bench] = diffs
    return out


def comparison_text(comparisons: dict) -> str:
    """Markdown: a table and one plain sentence per difference (B − A in points, paired bootstrap interval)."""
    from .compare import PairedDifference, difference_sentence

    if not comparisons:
        return ""
    blocks = []
    for bench, diffs in comparisons.items():
        labels = short_labels(list(dict.fromkeys([d["model_a"] for d in diffs] + [d["model_b"] for d in diffs])))
        first = diffs[0]
        rows = [
            f"### {bench}: paired comparison with {labels[first['model_a']]}",
            "",
            f"B − A in points (percentage points), {first['level']:.0%} paired bootstrap interval over the "
            f"{first['num_problems']} problems ({first['resamples']} resamples, seed {first['seed']}); "
            "'B > A' is the share of resamples in which B scored higher.",
            "",
            "| A | B | metric | A | B | B − A | interval | B > A |",
            "|---" * 8 + "|",
        ]
        sentences = []
        for d in diffs:
            pd = PairedDifference(**{k: d[k] for k in PairedDifference.__dataclass_fields__})
            rows.append(
                f"| {labels[d['model_a']]} | {labels[d['model_b']]} | {d['metric']} | {100 * d['mean_a']:.1f} | "
                f"{100 * d['mean_b']:.1f} | {100 * d['difference']:+.1f} | "
                f"[{100 * d['low']:+.1f}, {100 * d['high']:+.1f}] | {d['share_b_greater']:.0%} |"
            )
            sentences.append("- " + difference_sentence(pd, labels[d["model_a"]], labels[d["model_b"]]))
        blocks.append("\n".join(rows + [""] + sentences))
    return "\n\n".join(blocks) + "\n"


def write_outputs(out_dir: Path, results: dict, config: dict, comparisons: dict | None = None) -> list[Path]:
    """``results.json``, ``results.csv``, ``table.md`` and one ``pass_at_k_<benchmark>.png`` per benchmark."""
    written = []
    path = out_dir / "results.json"
    payload = {"config": config, "results": results, **({"comparisons": comparisons} if comparisons else {})}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    written.append(path)

    keys = sorted(
        {k for pm in results.values() for s in pm.values() for k in s if k not in NON_SCALAR},
        key=lambda k: (not k.startswith("num"), not k.startswith("pass@"), k),
    )
    path = out_dir / "results.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["benchmark", "model", *keys, *(f"{k}_{end}" for k in keys for end in ("low", "high"))])
        for bench, per_model in results.items():
            for model, s in per_model.items():
                ivs = s.get("intervals", {})
                bounds = [ivs[k][i] if k in ivs else "" for k in keys for i in (0, 1)]
                writer.writerow([bench, model, *("" if s.get(k) is None else s.get(k) for k in keys), *bounds])
    written.append(path)

    path = out_dir / "table.md"
    path.write_text(side_by_side(results) + ("\n" + comparison_text(comparisons) if comparisons else ""))
    written.append(path)
    written += plot_pass_at_k(out_dir, results)
    return written


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">")
LINESTYLES = ("-", "--", "-.", ":")


def plot_pass_at_k(out_dir: Path, results: dict) -> list[Path]:
    """One PNG per benchmark: pass@k in percent against k (log scale, integer ticks), one curve per model with its
    95% band where the summary has one (``pass_at_k_band``), up to the largest k every problem supports (n).
    Distinct markers and line styles keep coinciding curves visible."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    paths = []
    for bench, per_model in results.items():
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        labels = short_labels(list(per_model))
        drawn = [_plot_curve(ax, i, s, labels[model]) for i, (model, s) in enumerate(per_model.items())]
        _k_axis(ax, max([1] + [k for k, _ in drawn]))
        ax.set_ylabel("pass@k (% of problems, unbiased)")
        ax.set_ylim(-3, 103)
        n_problems = max(s["num_problems"] for s in per_model.values())
        title = f"{bench}: pass@k over {n_problems} problems"
        if any(banded for _, banded in drawn):
            title += "\nshaded: 95% bootstrap interval over problems"
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best", framealpha=0.9)
        fig.tight_layout()
        path = out_dir / f"pass_at_k_{_slug(bench)}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def _plot_curve(ax, i: int, summary: dict, label: str) -> tuple[int, bool]:
    """The ``i``-th model's pass@k curve (and its band, if any); returns its largest k and whether it has a band."""
    curve = summary["pass_at_k_curve"]
    ks = sorted(int(k) for k in curve)
    ys = [100 * curve[str(k)] for k in ks]
    # Markers evenly spaced on the log axis (every k on short curves); the first model's are small and
    # filled, later ones larger and hollow, drawn on top: curves that coincide (two at 0%) both stay visible.
    marked = {round(2 ** (t / 2)) for t in range(2 * ks[-1].bit_length() + 1)} if len(ks) > 16 else set(ks)
    line = ax.plot(
        ks,
        ys,
        marker=MARKERS[i % len(MARKERS)],
        markersize=min(12.0, 5.0 + 2.5 * i),
        markevery=[j for j, k in enumerate(ks) if k in marked],
        markeredgewidth=1.3,
        linestyle=LINESTYLES[i % len(LINESTYLES)],
        linewidth=1.5,
        label=label,
        zorder=3 + i,
        markerfacecolor="none" if i else None,
    )[0]
    band = summary.get("pass_at_k_band")
    if band:
        ax.fill_between(
            ks,
            [100 * band[str(k)][0] for k in ks],
            [100 * band[str(k)][1] for k in ks],
            color=line.get_color(),
            alpha=0.15,
            linewidth=0,
            zorder=1,
        )
    return ks[-1], bool(band)


def _k_axis(ax, k_max: int) -> None:
    """Log-2 k axis up to ``k_max`` with integer ticks: powers of two and k_max (every k up to 8)."""
    from matplotlib.ticker import FixedLocator, NullLocator

    ax.set_xscale("log", base=2)
    ticks = sorted({2**j for j in range(k_max.bit_length()) if 2**j <= k_max} | {k_max})
    if k_max <= 8:
        ticks = list(range(1, k_max + 1))
    if len(ticks) > 1 and ticks[-1] / ticks[-2] < 1.3:  # n right next to a power of two: keep n, drop the other
        ticks.pop(-2)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([str(t) for t in ticks])
    ax.set_xlim(0.9, k_max * 1.1)
    ax.set_xlabel("k (samples drawn per problem, log scale)")


def finish_step_figure(fig, axes, titles_units, path):
    """Per-optimiser-step panels (integer steps, a title and unit each, grid, a legend where curves were drawn),
    saved to ``path`` and closed: the training plot of ``eksft demo`` and the RL-stage curves of ``eksft pipeline``."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    for ax, (title, unit) in zip(axes, titles_units):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("optimiser step")
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
