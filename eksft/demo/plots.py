"""The demo report's figures: pass@k curves with their 95% bands, and the training curves (CE on the trained
targets, entropy, KL) of seed 0's runs."""

from __future__ import annotations

from pathlib import Path

from eksft.jobs.metrics import METRICS_FILE, read_metrics

from .stats import mean_ci


def colours(summary: dict) -> dict[str, str]:
    """One colour per model label, the same in every panel and plot."""
    cycle = ["#555555", "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
    return {m: cycle[i % len(cycle)] for i, m in enumerate(summary["seeds"][0]["models"])}


def plot_pass_at_k(summary: dict, path: Path) -> Path:
    """pass@k against k (log scale, integer ticks) for every model, with its 95% band: over seeds (t) when there
    are several, else the bootstrap over problems; markers keep coinciding curves visible."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullLocator

    seeds = summary["seeds"]
    colour = colours(summary)
    fig, ax = plt.subplots(figsize=(6, 4))
    markers = "osD^vP*X"
    ks_all: list[int] = []
    for i, m in enumerate(seeds[0]["models"]):
        curves = [s["eval"][m]["pass_at_k_curve"] for s in seeds]
        ks = sorted(int(k) for k in curves[0])
        ks_all = ks if len(ks) > len(ks_all) else ks_all
        stats = [mean_ci([c[str(k)] for c in curves]) for k in ks]
        means = [x for x, _ in stats]
        if len(seeds) >= 2:
            low = [x - (h or 0) for x, h in stats]
            high = [x + (h or 0) for x, h in stats]
        else:
            band = seeds[0]["eval"][m].get("pass_at_k_band") or {}
            low = [band.get(str(k), [x, x])[0] for k, x in zip(ks, means)]
            high = [band.get(str(k), [x, x])[1] for k, x in zip(ks, means)]
        ax.fill_between(ks, low, high, color=colour[m], alpha=0.15, linewidth=0)
        ax.plot(ks, means, marker=markers[i % len(markers)], markersize=4, color=colour[m], label=m, alpha=0.9)
    ax.set_xscale("log", base=2)
    ticks = [k for k in ks_all if k & (k - 1) == 0 or k == ks_all[-1]]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([str(k) for k in ticks])
    ax.set_xlabel("k (samples per problem)")
    ax.set_ylabel("pass@k (share of problems)")
    ax.set_ylim(-0.02, 1.02)
    band = "95% t-interval over seeds" if len(seeds) >= 2 else "95% bootstrap interval over problems"
    ax.set_title(f"pass@k on {summary['config']['task']}; bands: {band}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _logged(record: dict, key: str):
    """``record[key]``; for ``ce``, the logged ``loss`` where a run logged no ``ce``."""
    return record.get("ce", record.get("loss")) if key == "ce" else record.get(key)


def plot_training(summary: dict, path: Path) -> Path:
    """Cross-entropy on the trained targets, mean entropy and mean KL to the reference over training steps, seed 0
    (KL only where the method loads a reference). The CE panel compares like with like: each method's CE on the
    targets it imitates, not its combined objective (EKSFT's includes the entropy bonus and can go below 0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("ce", "cross-entropy on trained targets", "nats/token"),
        ("entropy_mean", "mean token entropy", "nats"),
        ("kl_mean", "mean KL(policy ‖ base)", "nats"),
    ]
    colour = colours(summary)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for method, run in summary["seeds"][0]["runs"].items():
        logged = read_metrics(run["run_dir"]) if (Path(run["run_dir"]) / METRICS_FILE).exists() else []
        lines = [r for r in logged if "step" in r and "train_runtime" not in r]
        for ax, (key, _, _) in zip(axes, panels):
            pts = [(r["step"], v) for r in lines if (v := _logged(r, key)) is not None]
            if pts:
                ax.plot(*zip(*pts), marker=".", color=colour[method], label=method)
    from eksft.eval.report import finish_step_figure

    return finish_step_figure(fig, axes, [(title, unit) for _, title, unit in panels], path)
