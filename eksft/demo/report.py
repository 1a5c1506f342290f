"""``report.md``, a self-contained ``report.html`` (images inlined) and ``report.json`` for the demo.

The report is built as a list of blocks (heading, paragraph, table, image) rendered twice, so the Markdown and the
HTML always say the same thing. Every number is the mean over seeds, with a 95% interval when there are several;
the comparison sentences are derived from those numbers, including when EKSFT does not beat SFT.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from eksft.train.metrics import METRICS_FILE, read_metrics

from .run import BASE
from .stats import compare, fmt, mean_ci

# (row label, getter(seed_record, model_label) -> float | None, which direction is better: 1 up, -1 down, 0 neither)
ROWS = [
    ("pass@1", lambda s, m: s["eval"][m]["pass@1"], 1),
    ("pass@{n}", lambda s, m: s["eval"][m][f"pass@{s['eval'][m]['n']}"], 1),
    ("no \\boxed{} answer (share)", lambda s, m: s["eval"][m]["no_answer_fraction"], -1),
    ("truncated responses (share)", lambda s, m: s["eval"][m]["truncated_fraction"], -1),
    ("mean response tokens", lambda s, m: s["eval"][m]["mean_response_tokens"], 0),
    ("distinct answers per problem", lambda s, m: s["eval"][m]["distinct_answers_per_problem"], 0),
    ("sample token entropy (nats)", lambda s, m: s["eval"][m]["mean_token_entropy"], 0),
    ("distinct-2 of samples", lambda s, m: s["eval"][m]["distinct_2"], 0),
    ("held-out NLL (nats/token)", lambda s, m: s["heldout"][m]["nll"], -1),
    ("held-out entropy (nats/token)", lambda s, m: s["heldout"][m]["entropy"], 0),
    ("held-out KL to base (nats/token)", lambda s, m: s["heldout"][m]["kl"], -1),
    ("parameters changed > 1e-3 (share)", lambda s, m: 0.0 if m == BASE else (s["drift"] or {}).get(m, {}).get("0.001"), -1),
    ("training time (min)", lambda s, m: None if m == BASE else s["runs"][m]["train_seconds"] / 60, -1),
]  # fmt: skip

# Rows worth a sentence comparing each method with SFT.
HEADLINE = ("pass@1", "pass@{n}", "held-out KL to base (nats/token)", "held-out entropy (nats/token)",
            "sample token entropy (nats)", "distinct answers per problem", "parameters changed > 1e-3 (share)")  # fmt: skip


def values(summary: dict, getter, model: str) -> list[float]:
    out = []
    for s in summary["seeds"]:
        try:
            v = getter(s, model)
        except (KeyError, TypeError):
            v = None
        if v is not None:
            out.append(float(v))
    return out


def results_table(summary: dict) -> tuple[list[str], list[list[str]]]:
    labels = list(summary["seeds"][0]["models"])
    n = summary["config"]["samples"]
    rows = []
    for name, getter, _ in ROWS:
        rows.append([name.replace("{n}", str(n)), *(fmt(values(summary, getter, m)) for m in labels)])
    return ["metric", *labels], rows


def sentences(summary: dict) -> list[str]:
    labels = list(summary["seeds"][0]["models"])
    n = summary["config"]["samples"]
    seeds = len(summary["seeds"])
    out = []
    p1 = dict((name, g) for name, g, _ in ROWS)["pass@1"]
    for m in labels[1:]:
        word = compare(values(summary, p1, m), values(summary, p1, BASE))
        out.append(f"{m} vs the base model, pass@1: {fmt(values(summary, p1, BASE))} → "
                   f"{fmt(values(summary, p1, m))} ({word}).")  # fmt: skip
    if "sft" in labels:
        for m in [x for x in labels[1:] if x != "sft"]:
            for name, getter, better in ROWS:
                if name not in HEADLINE:
                    continue
                a, b = values(summary, getter, m), values(summary, getter, "sft")
                word = compare(a, b)
                verdict = ""
                if better and word in ("higher", "lower"):
                    good = (word == "higher") == (better > 0)
                    verdict = f": {m} is {'better' if good else 'worse'} than SFT here"
                elif better and word in ("indistinguishable", "equal"):
                    verdict = f": no measurable difference between {m} and SFT"
                out.append(f"{name.replace('{n}', str(n))}: {m} {fmt(a)} vs sft {fmt(b)} ({word}){verdict}.")
    if seeds == 1:
        out.append("One seed: the numbers have no interval and small differences may be noise; run with --seeds 3 "
                   "or more for 95% intervals.")  # fmt: skip
    else:
        out.append(f"{seeds} seeds: ± is the half-width of the 95% Student-t interval of the mean; 'indistinguishable' "
                   "means the two intervals overlap.")  # fmt: skip
    return out


def plot_pass_at_k(summary: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for m in summary["seeds"][0]["models"]:
        curves = [s["eval"][m]["pass_at_k_curve"] for s in summary["seeds"]]
        ks = sorted(int(k) for k in curves[0])
        means = [mean_ci([c[str(k)] for c in curves])[0] for k in ks]
        ax.plot(ks, means, marker="o", label=m)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k")
    ax.set_ylabel("pass@k")
    ax.set_title(f"pass@k on {summary['config']['task']} (mean over {len(summary['seeds'])} seed(s))")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_training(summary: dict, path: Path) -> Path:
    """Loss, mean entropy and mean KL to the reference over training steps, seed 0 (KL only where the method
    loads a reference)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("loss", "training loss"), ("entropy_mean", "mean token entropy (nats)"),
              ("kl_mean", "mean KL(policy ‖ base) (nats)")]  # fmt: skip
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for method, run in summary["seeds"][0]["runs"].items():
        logged = read_metrics(run["run_dir"]) if (Path(run["run_dir"]) / METRICS_FILE).exists() else []
        lines = [r for r in logged if "step" in r and "train_runtime" not in r]
        for ax, (key, title) in zip(axes, panels):
            pts = [(r["step"], r[key]) for r in lines if r.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts), label=method)
            ax.set_title(title)
            ax.set_xlabel("step")
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def blocks(summary: dict, out: Path) -> list[tuple]:
    cfg = summary["config"]
    mach = summary["machine"]
    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    b = [("h1", "eksft demo: base vs " + " vs ".join(cfg["methods"]))]
    b.append(("p", f"Model `{cfg['model']}` ({summary['base_model']}), fine-tuned on {cfg['train_size']} "
                   f"`{cfg['task']}` worked solutions ending in \\boxed{{}}: {cfg['steps']} AdamW steps × "
                   f"{cfg['batch_size']} sequences, learning rate {cfg['learning_rate']:g} (cosine), full fine-tuning "
                   f"in fp32; EKSFT ρ = {cfg['rho']}, λ_H = {cfg['lambda_entropy']}, λ_KL = {cfg['lambda_kl']}. "
                   f"Evaluation: {cfg['eval_problems']} held-out problems × {cfg['samples']} samples at temperature "
                   f"1.0, at most {cfg['max_new_tokens']} new tokens, answers checked with math-verify (gold first). "
                   f"Seeds: {len(summary['seeds'])}.{' QUICK settings: a smoke run, not a result.' if cfg['quick'] else ''}"))  # fmt: skip
    b.append(("p", f"Machine: {mach['platform']}, {mach['cpu_count']} CPUs ({mach['torch_threads']} torch threads), "
                   f"torch {mach['torch']}. Wall time {summary['wall_seconds'] / 60:.1f} min, peak memory "
                   f"{summary['peak_rss_gb']:.2f} GiB (process peak RSS)."))  # fmt: skip
    b.append(("h2", "Results"))
    header, rows = results_table(summary)
    b.append(("table", header, rows))
    b.append(("h2", "What the numbers say"))
    b.append(("ul", sentences(summary)))
    b.append(("h2", "Plots"))
    b.append(("img", plot_pass_at_k(summary, plots / "pass_at_k.png"), "pass@k curves"))
    b.append(("img", plot_training(summary, plots / "training.png"),
              "loss, entropy and KL to the base model over training steps (seed 0)"))  # fmt: skip
    for path, caption in [(out / "drift" / "drift_histogram.png", "relative parameter change (seed 0)"),
                          (out / "probe" / "probe.png", "probability of each token of a held-out solution under "
                           "each model; EKSFT's would-be mask marked"),
                          (out / "masks" / "masks.png", "EKSFT mask statistics over training steps")]:  # fmt: skip
        if path.exists():
            b.append(("img", path, caption))
    b.append(("p", "Files: `report.json` (every number, per seed), `seed*/eval/` (samples.jsonl, results.json), "
                   "`seed*/<method>/metrics.jsonl` (training metrics), `drift/`, `probe/` (probe.html: the heat map "
                   "with hover values), `masks/`."))  # fmt: skip
    return b


def to_markdown(bl: list[tuple], out: Path) -> str:
    lines = []
    for block in bl:
        kind = block[0]
        if kind == "h1":
            lines += [f"# {block[1]}", ""]
        elif kind == "h2":
            lines += [f"## {block[1]}", ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "ul":
            lines += [f"- {x}" for x in block[1]] + [""]
        elif kind == "table":
            header, rows = block[1], block[2]
            lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(r) + " |" for r in rows] + [""]
        elif kind == "img":
            lines += [f"![{block[2]}]({Path(block[1]).relative_to(out)})", f"*{block[2]}*", ""]
    return "\n".join(lines)


def to_html(bl: list[tuple]) -> str:
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>eksft demo report</title><style>"
             "body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;line-height:1.45}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}"
             "td:first-child,th:first-child{text-align:left}img{max-width:100%}figcaption{color:#555}"
             "</style></head><body>"]  # fmt: skip
    for block in bl:
        kind = block[0]
        if kind in ("h1", "h2", "p"):
            parts.append(f"<{kind}>{html.escape(block[1])}</{kind}>")
        elif kind == "ul":
            parts.append("<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in block[1]) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{html.escape(h)}</th>" for h in block[1])
            body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in block[2])
            parts.append(f"<table><tr>{head}</tr>{body}</table>")
        elif kind == "img":
            data = base64.b64encode(Path(block[1]).read_bytes()).decode()
            parts.append(f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(block[2])}'>"
                         f"<figcaption>{html.escape(block[2])}</figcaption></figure>")  # fmt: skip
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(summary: dict, out: Path) -> list[Path]:
    bl = blocks(summary, out)
    md, page, js = out / "report.md", out / "report.html", out / "report.json"
    md.write_text(to_markdown(bl, out))
    page.write_text(to_html(bl))
    header, rows = results_table(summary)
    js.write_text(json.dumps({**summary, "table": {"header": header, "rows": rows}}, indent=1, default=str) + "\n")
    return [md, page, js]
