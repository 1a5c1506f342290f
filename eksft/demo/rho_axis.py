"""The ρ axis of the demo's report: when a run trains EKSFT at several ρ and nothing else differs
(``--methods 'sft,eksft[rho=0.05],eksft[rho=0.1],eksft[rho=0.2]'``), pass@1, pass@k at the largest k, held-out
entropy and KL against ρ, with SFT's value as the reference line, and each ρ's difference to SFT at the largest k.

Intervals as everywhere in the report: the Student-t interval over seeds with several seeds, else the bootstrap
over problems (pass@k) or held-out solutions (entropy, KL); differences to SFT come from :mod:`.claims`.
"""

from __future__ import annotations

from pathlib import Path

from .claims import claim_difference
from .stats import mean_ci
from .tables import ROWS, single_seed_interval, values

#: (panel title, report row name, unit shown on the axis)
PANELS = [
    ("pass@1", "pass@1", "share of problems"),
    ("pass@{n}", "pass@{n}", "share of problems"),
    ("held-out entropy", "held-out entropy (nats/token)", "nats/token"),
    ("held-out KL to base", "held-out KL to base (nats/token)", "nats/token"),
]


def rho_sweep(summary: dict) -> dict[float, str]:
    """ρ -> method label for the trained EKSFT methods that differ from the run's defaults only in ρ (plain
    ``eksft`` counts at the run's ``rho``); empty unless at least two distinct ρ were trained."""
    from eksft.methods import parse_method

    default = float(summary["config"]["rho"])  # the run's --rho (DemoConfig holds its default)
    found: dict[float, str] = {}
    for label in summary["seeds"][0]["runs"]:
        try:
            method = parse_method(label)
        except ValueError:
            continue
        overrides = dict(method.overrides)
        if method.loss_type != "eksft" or set(overrides) - {"rho"}:
            continue
        found.setdefault(float(overrides.get("rho", default)), label)
    return dict(sorted(found.items())) if len(found) >= 2 else {}


def _point(summary: dict, row: str, model: str) -> tuple[float, float, float] | None:
    """(value, low, high) of a report row for one model: t-interval over seeds, or the one seed's interval."""
    getter = dict((name, g) for name, g, _ in ROWS)[row]
    xs = values(summary, getter, model)
    if not xs:
        return None
    if len(summary["seeds"]) >= 2:
        m, h = mean_ci(xs)
        return m, m - (h or 0.0), m + (h or 0.0)
    iv = single_seed_interval(summary["seeds"][0], row, model)
    return (xs[0], *iv) if iv else (xs[0], xs[0], xs[0])


def plot_rho_axis(summary: dict, sweep: dict[float, str], path: Path, ref: str = "sft") -> Path:
    """Four panels against ρ (log scale): each EKSFT point with its 95% interval, SFT as a dashed line and band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = summary["config"]["samples"]
    rhos = list(sweep)
    fig, axes = plt.subplots(1, len(PANELS), figsize=(14, 3.4))
    for ax, (title, row, unit) in zip(axes, PANELS):
        points = [_point(summary, row, sweep[r]) for r in rhos]
        kept = [(r, p) for r, p in zip(rhos, points) if p is not None]
        if kept:
            xs = [r for r, _ in kept]
            ys = [p[0] for _, p in kept]
            err = [[max(p[0] - p[1], 0.0) for _, p in kept], [max(p[2] - p[0], 0.0) for _, p in kept]]
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, color="#d62728", label="EKSFT")
        ref_point = _point(summary, row, ref) if ref in summary["seeds"][0]["models"] else None
        if ref_point is not None:
            ax.axhline(ref_point[0], color="#1f77b4", linestyle="--", label=ref.upper())
            ax.axhspan(ref_point[1], ref_point[2], color="#1f77b4", alpha=0.12, linewidth=0)
        ax.set_xscale("log")
        ax.set_xticks(rhos)
        ax.set_xticklabels([f"{r:g}" for r in rhos])
        ax.minorticks_off()
        ax.set_xlabel("ρ")
        ax.set_ylabel(unit)
        ax.set_title(title.replace("{n}", str(n)), fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    band = "95% t-interval over seeds" if len(summary["seeds"]) >= 2 else "95% bootstrap interval"
    fig.suptitle(f"EKSFT against ρ on {summary['config']['task']}; bars and band: {band}", fontsize=10)
    fig.supxlabel("ρ: the share of response targets selected by each of entropy and KL (log scale)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def rho_blocks(summary: dict, plots: Path, ref: str = "sft") -> list[tuple]:
    """The report's "Against ρ" section (nothing unless the run trained EKSFT at two or more ρ)."""
    sweep = rho_sweep(summary)
    if not sweep:
        return []
    n = summary["config"]["samples"]
    has_ref = ref in summary["seeds"][0]["runs"]
    header = ["ρ", "method", "pass@1", f"pass@{n}", "held-out entropy", "held-out KL to base"]
    if has_ref:
        header.append(f"pass@{n} − {ref} (points)")
    rows = []
    for rho, label in sweep.items():
        row = [f"{rho:g}", f"`{label}`"]
        for _, name, _ in PANELS:
            p = _point(summary, name, label)
            row.append("–" if p is None else f"{p[0]:.3f} [{p[1]:.3f}, {p[2]:.3f}]")
        if has_ref:
            d = claim_difference(summary, "pass@{n}", label, ref)
            row.append(
                "–"
                if d is None
                else f"{100 * d['estimate']:+.1f}"
                + ("" if d["low"] is None else f" [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}]")
            )
        rows.append(row)
    return [
        ("h2", "Against ρ"),
        (
            "p",
            "EKSFT at each ρ trained here (everything else equal), with 95% intervals; the dashed line and band in "
            f"the plot are {ref.upper()}'s value. The last column is the paired difference to {ref} at the largest "
            "k (over seeds: t-interval of the per-seed differences; one seed: bootstrap over problems).",
        ),
        ("table", header, rows),
        ("img", plot_rho_axis(summary, sweep, plots / "rho_axis.png", ref), "EKSFT against ρ"),
    ]
