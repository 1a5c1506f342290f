"""Turn ``samples.jsonl`` lines into the numbers, tables and plots ``eksft eval`` writes (docs/evaluation.md)."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

from .metrics import distinct_n, pass_at_k, pass_at_k_mean

DISTINCT_NS = (1, 2, 3)


def summarize(lines: list[dict], ks: list[int]) -> dict:
    """Metrics of one model on one benchmark from its sample lines (every problem must have the same n)."""
    by_problem = defaultdict(list)
    for line in lines:
        by_problem[line["problem_id"]].append(line)
    ns = {len(v) for v in by_problem.values()}
    if len(ns) != 1:
        raise ValueError(f"problems have different sample counts {sorted(ns)}; pass@k needs the same n everywhere")
    n = ns.pop()
    counts = [(n, sum(s["correct"] for s in group)) for group in by_problem.values()]
    samples = [s for group in by_problem.values() for s in group]
    entropies = [s["mean_entropy"] for s in samples if s.get("mean_entropy") is not None]
    out = {"num_problems": len(by_problem), "n": n}
    for k in ks:
        out[f"pass@{k}"] = pass_at_k_mean(counts, k)
    out[f"avg@{n}"] = sum(c for _, c in counts) / (n * len(counts))
    out["mean_response_tokens"] = sum(s["num_tokens"] for s in samples) / len(samples)
    out["truncated_fraction"] = sum(s["truncated"] for s in samples) / len(samples)
    out["no_answer_fraction"] = sum(s["answer"] is None for s in samples) / len(samples)
    # Diversity (paper section 1: SFT narrows the output distribution): answers, token entropy, n-gram variety.
    out["distinct_answers_per_problem"] = sum(
        len({s["answer"] for s in g if s["answer"] is not None}) for g in by_problem.values()
    ) / len(by_problem)
    out["mean_token_entropy"] = sum(entropies) / len(entropies) if entropies else None
    for d in DISTINCT_NS:
        out[f"distinct_{d}"] = sum(distinct_n([s["completion"] for s in g], d) for g in by_problem.values()) / len(
            by_problem
        )
    out["pass_at_k_curve"] = {str(k): sum(pass_at_k(n, c, k) for _, c in counts) / len(counts) for k in range(1, n + 1)}
    return out


def scalar_keys(results: dict) -> list[str]:
    """Metric names in a stable order, from the first model's summary (the curve is left out: not a scalar)."""
    for per_model in results.values():
        for summary in per_model.values():
            return [k for k in summary if k != "pass_at_k_curve"]
    return []


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def side_by_side(results: dict) -> str:
    """One Markdown table per benchmark: metrics in rows, models in columns."""
    blocks = []
    for bench, per_model in results.items():
        models = list(per_model)
        keys = [k for k in scalar_keys({bench: per_model})]
        rows = [f"### {bench}", "", "| metric | " + " | ".join(models) + " |", "|---" * (len(models) + 1) + "|"]
        for key in keys:
            rows.append(f"| {key} | " + " | ".join(_fmt(per_model[m].get(key)) for m in models) + " |")
        blocks.append("\n".join(rows))
    return "\n\n".join(blocks) + "\n"


def write_outputs(out_dir: Path, results: dict, config: dict) -> list[Path]:
    """``results.json``, ``results.csv``, ``table.md`` and one ``pass_at_k_<benchmark>.png`` per benchmark."""
    written = []
    path = out_dir / "results.json"
    path.write_text(json.dumps({"config": config, "results": results}, indent=2) + "\n")
    written.append(path)

    keys = sorted({k for pm in results.values() for s in pm.values() for k in s if k != "pass_at_k_curve"},
                  key=lambda k: (not k.startswith("num"), not k.startswith("pass@"), k))  # fmt: skip
    path = out_dir / "results.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["benchmark", "model", *keys])
        for bench, per_model in results.items():
            for model, s in per_model.items():
                writer.writerow([bench, model, *("" if s.get(k) is None else s.get(k) for k in keys)])
    written.append(path)

    path = out_dir / "table.md"
    path.write_text(side_by_side(results))
    written.append(path)
    written += plot_pass_at_k(out_dir, results)
    return written


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def plot_pass_at_k(out_dir: Path, results: dict) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    paths = []
    for bench, per_model in results.items():
        fig, ax = plt.subplots(figsize=(6, 4))
        for model, s in per_model.items():
            curve = s["pass_at_k_curve"]
            ks = sorted(int(k) for k in curve)
            ax.plot(ks, [curve[str(k)] for k in ks], marker="o" if len(ks) < 20 else None, markersize=3, label=model)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("k (samples)")
        ax.set_ylabel("pass@k (unbiased)")
        ax.set_ylim(-0.02, 1.02)
        n_problems = max(s["num_problems"] for s in per_model.values())
        ax.set_title(f"{bench}: pass@k ({n_problems} problems)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / f"pass_at_k_{_slug(bench)}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths
