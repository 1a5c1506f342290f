"""Mask statistics over training steps from ``RUN_DIR/metrics.jsonl`` (paper Appendix F: IoU of M_H and M_KL).

Each line of ``metrics.jsonl`` is one JSON object per logging step with a ``step`` key. Lines without any of
:data:`MASK_METRICS` (e.g. pure ``eval_*`` lines) are skipped; other keys on a line (``loss``, ``learning_rate``)
are ignored. A key may carry a ``train/`` or ``train_`` prefix, as some loggers add one.

Targets by how often they were masked: ``RUN_DIR/mask_targets.json``, written by training
(eksft/train/step_log.py: per token id, masked share, steps in which every occurrence was masked, final
probability); :func:`top_targets` picks the listing ``eksft masks`` and the demo report show.
"""

from __future__ import annotations

import json
from pathlib import Path

from eksft.text_files import jsonl_objects

MASK_METRICS = (
    "masked_fraction",
    "entropy_masked_fraction",
    "kl_masked_fraction",
    "iou_entropy_kl",
    "entropy_masked_mean",
    "entropy_unmasked_mean",
    "kl_masked_mean",
    "kl_unmasked_mean",
    "entropy_mean",
    "kl_mean",
    "persistently_masked_fraction",
)
TARGETS_FILE = "mask_targets.json"
PREFIXES = ("", "train/", "train_")
#: Panel titles in words, with units; shares are drawn on [0, 1] so step-to-step noise does not look like a swing.
TITLES = {
    "masked_fraction": ("share of targets taken out of CE (|M| / N)", "share"),
    "entropy_masked_fraction": ("share selected by entropy (|M_H| / N)", "share"),
    "kl_masked_fraction": ("share selected by KL (|M_KL| / N)", "share"),
    "iou_entropy_kl": ("overlap of the two sets, IoU(M_H, M_KL)", "share"),
    "entropy_masked_mean": ("mean entropy of masked targets", "nats"),
    "entropy_unmasked_mean": ("mean entropy of trained targets", "nats"),
    "kl_masked_mean": ("mean KL to reference, masked targets", "nats"),
    "kl_unmasked_mean": ("mean KL to reference, trained targets", "nats"),
    "entropy_mean": ("mean entropy, all targets", "nats"),
    "kl_mean": ("mean KL to reference, all targets", "nats"),
    "persistently_masked_fraction": ("share of targets masked at every step for a run of steps", "share"),
}


def read_run(run_dir: str | Path) -> dict:
    """``{"steps": [...], "series": {metric: [value or None per step]}}`` from one run's ``metrics.jsonl``."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise ValueError(f"{path} does not exist; pass a training run folder that has metrics.jsonl")
    steps, series = [], {m: [] for m in MASK_METRICS}
    for i, rec in jsonl_objects(path.read_text(), str(path)):
        values = {m: next((rec[p + m] for p in PREFIXES if p + m in rec), None) for m in MASK_METRICS}
        if all(v is None for v in values.values()):
            continue  # an eval or summary line
        if "step" not in rec:
            raise ValueError(f"{path} line {i}: mask metrics without a 'step' key; every logging line needs one")
        steps.append(rec["step"])
        for m, v in values.items():
            series[m].append(None if v is None else float(v))
    if not steps:
        raise ValueError(f"{path} has no line with any of {list(MASK_METRICS)}; was the run trained with eksft?")
    return {"steps": steps, "series": {m: v for m, v in series.items() if any(x is not None for x in v)}}


def read_targets(run_dir: str | Path) -> dict | None:
    """``RUN_DIR/mask_targets.json`` (training's per-token mask counts), or None when the run has none (a loss
    without a mask, tracking off, or a run from before the file existed)."""
    path = Path(run_dir) / TARGETS_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def top_targets(targets: dict, limit: int = 12) -> list[dict]:
    """The most-masked token ids among those that occurred in at least half of the tracked steps (a token seen once
    and masked once says nothing), most-masked first, then the most frequent."""
    min_steps = max(1, (targets.get("steps", 0) + 1) // 2)
    rows = [r for r in targets.get("tokens", []) if r["steps_seen"] >= min_steps]
    rows.sort(key=lambda r: (-r["masked_share"], -r["occurrences"], r["token_id"]))
    return rows[:limit]


TARGETS_HEADER = ["token", "masked", "steps all masked", "final p"]


def targets_table(targets: dict) -> list[list[str]]:
    """:func:`top_targets` as table rows under :data:`TARGETS_HEADER` (the demo and pipeline reports)."""
    return [
        [
            repr(r["text"]),
            f"{r['masked_share']:.0%}",
            f"{r['steps_all_masked']}/{r['steps_seen']}",
            f"{r['final_prob']:.3f}",
        ]
        for r in top_targets(targets)
    ]


def targets_note(targets: dict) -> str:
    """One paragraph saying what the table holds and whether training warned."""
    warned = targets.get("warned_at_step")
    return (
        f"Token ids seen in at least half of the {targets['steps']} training steps, most often masked first. A "
        "target masked at every step never gets cross-entropy, and its KL penalty pulls it towards the reference: "
        + (
            f"the persistent-mask warning fired at step {warned}."
            if warned
            else "no persistent-mask warning was logged."
        )
        + " `final p`: its mean probability under the policy at its last step."
    )


def summarize_run(run: dict) -> dict:
    """Mean of each metric over all logged steps and over the last quarter of them."""
    out = {}
    for m, vals in run["series"].items():
        xs = [v for v in vals if v is not None]
        tail = xs[-max(1, len(xs) // 4) :]
        out[m] = {"mean": sum(xs) / len(xs), "last_quarter_mean": sum(tail) / len(tail), "last": xs[-1]}
    return out


def plot_masks(runs: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    metrics = [m for m in MASK_METRICS if any(m in r["series"] for r in runs.values())]
    cols = min(3, len(metrics))
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, m in zip(axes.flat, metrics):
        for name, r in runs.items():
            if m in r["series"]:
                pts = [(s, v) for s, v in zip(r["steps"], r["series"][m]) if v is not None]
                ax.plot([s for s, _ in pts], [v for _, v in pts], label=name, linewidth=1.2, marker=".")
        title, unit = TITLES.get(m, (m, ""))
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("optimiser step", fontsize=8)
        ax.set_ylabel(unit, fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if unit == "share":
            ax.set_ylim(-0.02, 1.02)
        else:
            ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_masks(run_dirs: list[str], out_dir: str | Path) -> dict:
    """Read every run (errors first, before anything is written), then write ``masks.json`` and ``masks.png`` to
    ``out_dir``; the report per run name."""
    names = [Path(d).resolve().name for d in run_dirs]
    if len(set(names)) != len(names):  # two runs named the same in different folders: keep the full paths
        names = [str(d) for d in run_dirs]
    runs = {name: read_run(d) for name, d in zip(names, run_dirs)}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = {
        name: {"run_dir": str(d), "summary": summarize_run(r), **r, "targets": read_targets(d)}
        for (name, r), d in zip(runs.items(), run_dirs)
    }
    (out / "masks.json").write_text(json.dumps(report, indent=1) + "\n")
    plot_masks(runs, out / "masks.png")
    return report
