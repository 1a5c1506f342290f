"""``report.md``, a self-contained ``report.html`` (images inlined) and ``report.json`` for the demo.

The report is built as a list of blocks (heading, paragraph, table, image) rendered twice, so the Markdown and the
HTML always say the same thing. Every number carries a 95% interval: over seeds (Student t) when there are several,
else a bootstrap over the evaluation problems or the held-out solutions; the verdicts (``claims.py``) come from
intervals of the differences, including when EKSFT does not beat SFT.
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

from eksft.eval.intervals import RESAMPLES
from eksft.jobs.metrics import METRICS_FILE, read_metrics

from .claims import claim_sentences, weighted_interval
from .config import BASE, WARM
from .rho_axis import rho_blocks
from .stats import fmt, mean_ci

# (row label, getter(seed_record, model_label) -> float | None, which direction is better: 1 up, -1 down, 0 neither)
ROWS = [
    ("pass@1", lambda s, m: s["eval"][m]["pass@1"], 1),
    ("pass@{n}", lambda s, m: s["eval"][m][f"pass@{s['eval'][m]['n']}"], 1),
    ("pass@1, last number as the answer", lambda s, m: s["eval"][m].get(f"avg@{s['eval'][m]['n']}_last_number"), 1),
    ("no \\boxed{} answer (share)", lambda s, m: s["eval"][m]["no_answer_fraction"], -1),
    ("truncated responses (share)", lambda s, m: s["eval"][m]["truncated_fraction"], -1),
    ("mean response tokens", lambda s, m: s["eval"][m]["mean_response_tokens"], 0),
    ("distinct answers per problem", lambda s, m: s["eval"][m]["distinct_answers_per_problem"], 0),
    ("sample token entropy (nats)", lambda s, m: s["eval"][m]["mean_token_entropy"], 0),
    ("distinct-2 of samples", lambda s, m: s["eval"][m]["distinct_2"], 0),
    ("held-out NLL (nats/token)", lambda s, m: s["heldout"][m]["nll"], -1),
    ("held-out entropy (nats/token)", lambda s, m: s["heldout"][m]["entropy"], 0),
    ("held-out KL to base (nats/token)", lambda s, m: s["heldout"][m]["kl"], -1),
    (
        "parameters changed > 1e-3 (share)",
        lambda s, m: 0.0 if m not in s["runs"] else (s["drift"] or {}).get(m, {}).get("0.001"),
        -1,
    ),
    ("training time (min)", lambda s, m: None if m not in s["runs"] else s["runs"][m]["train_seconds"] / 60, -1),
]

#: Row -> its interval with one seed: the eval bootstrap's key (over problems) or the held-out statistic (over
#: solutions). Rows not listed have no single-seed interval.
EVAL_KEYS = {
    "pass@1": "pass@1",
    "pass@{n}": "pass@{n}",
    "pass@1, last number as the answer": "avg@{n}_last_number",
    "no \\boxed{} answer (share)": "no_answer_fraction",
    "truncated responses (share)": "truncated_fraction",
    "mean response tokens": "mean_response_tokens",
    "distinct answers per problem": "distinct_answers_per_problem",
    "sample token entropy (nats)": "mean_token_entropy",
    "distinct-2 of samples": "distinct_2",
}
HELDOUT_KEYS = {
    "held-out NLL (nats/token)": "nll",
    "held-out entropy (nats/token)": "entropy",
    "held-out KL to base (nats/token)": "kl",
}


def single_seed_interval(seed: dict, name: str, model: str) -> tuple[float, float] | None:
    """The 95% interval of one seed's cell (bootstrap over problems or held-out solutions), if it has one."""
    try:
        if name in EVAL_KEYS:
            key = EVAL_KEYS[name].replace("{n}", str(seed["eval"][model]["n"]))
            lo, hi = seed["eval"][model]["intervals"][key]
            return float(lo), float(hi)
        if name in HELDOUT_KEYS:
            ps = seed["heldout"][model]["per_solution"]
            return weighted_interval(ps[HELDOUT_KEYS[name]], ps["tokens"])
    except (KeyError, TypeError, ValueError):
        return None
    return None


def cell(summary: dict, name: str, getter, model: str) -> str:
    xs = values(summary, getter, model)
    if len(summary["seeds"]) >= 2 or not xs:
        return fmt(xs)
    iv = single_seed_interval(summary["seeds"][0], name, model)
    return fmt(xs) if iv is None else f"{xs[0]:.3f} [{iv[0]:.3f}, {iv[1]:.3f}]"


def interval_note(summary: dict) -> str:
    seeds = len(summary["seeds"])
    if seeds >= 2:
        return (
            f"Cells: mean ± half-width of the 95% Student-t interval over {seeds} training seeds (each seed "
            "trains every model and samples its own answers)."
        )
    return (
        f"Cells: value [95% interval] from one seed: a bootstrap over the evaluation problems ({RESAMPLES:,} "
        "resamples; pass@k resamples each problem's unbiased estimate) or over the held-out solutions "
        "(token-weighted). "
        "It covers which problems were drawn and the sampling, not training noise: use --seeds 3 for that."
    )


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


def start_label(summary: dict) -> str:
    """The label of the model every method started from (the first model): ``base``, or the ``warm start`` of the
    self data regime. "KL to base" is KL to this model."""
    return next(iter(summary["seeds"][0]["models"]))


def shown_name(summary: dict, name: str) -> str:
    """A row name as the report shows it: pass@{n} with the run's n, KL "to base" named after the start model."""
    start = start_label(summary)
    name = name.replace("{n}", str(summary["config"]["samples"]))
    return name if start == BASE else name.replace("KL to base", f"KL to {start}")


def results_table(summary: dict) -> tuple[list[str], list[list[str]]]:
    labels = list(summary["seeds"][0]["models"])
    rows = []
    for name, getter, _ in ROWS:
        if not any(values(summary, getter, m) for m in labels):
            continue  # e.g. no last-number check in older results
        rows.append([shown_name(summary, name), *(cell(summary, name, getter, m) for m in labels)])
    return ["metric", *labels], rows


def steps_text(steps) -> str:
    return " and ".join(map(str, steps)) if isinstance(steps, (list, tuple)) else str(steps)


def length_groups(summary: dict) -> dict[int, list[str]]:
    """``{steps: [labels trained that long]}`` for the methods with their own length (``[max_steps=N]``, which
    ``--steps 20,80`` gives every method), lengths ascending; empty when no method sets one."""
    from eksft.methods import parse_method

    out: dict[int, list[str]] = {}
    for label in summary["seeds"][0]["runs"]:
        try:
            steps = parse_method(label).steps
        except ValueError:
            continue
        if steps is not None:
            out.setdefault(int(steps), []).append(label)
    return dict(sorted(out.items()))


#: The rows of the SFT-length table: (row name in ROWS, shown as).
LENGTH_ROWS = [
    ("pass@1", "pass@1"),
    ("pass@{n}", "pass@{n}"),
    ("held-out entropy (nats/token)", "held-out entropy"),
    ("held-out KL to base (nats/token)", "held-out KL to base"),
]


def length_table(summary: dict) -> tuple[list[str], list[list[str]]] | None:
    """pass@1, pass@k, held-out entropy and KL against SFT length, one row per (method, metric), one column per
    length; None when fewer than two lengths were trained."""
    from eksft.methods import parse_method

    groups = length_groups(summary)
    if len(groups) < 2:
        return None
    n = summary["config"]["samples"]
    getters = dict((name, g) for name, g, _ in ROWS)
    methods: dict[str, dict[int, str]] = {}  # method without its length -> {steps: label}
    for steps, labels in groups.items():
        for label in labels:
            methods.setdefault(parse_method(label).with_steps(None).label, {})[steps] = label
    rows = []
    for method, by_steps in methods.items():
        for name, shown in LENGTH_ROWS:
            cells = [cell(summary, name, getters[name], by_steps[s]) if s in by_steps else "–" for s in groups]
            rows.append([method, shown.replace("{n}", str(n)), *cells])
    return ["method", "metric", *(f"{s} steps" for s in groups)], rows


def length_blocks(summary: dict) -> list[tuple]:
    table = length_table(summary)
    if table is None:
        return []
    return [
        ("h2", "Against SFT length"),
        (
            "p",
            "The same numbers as above, per method against the number of optimiser steps it was trained for (each "
            "length is its own model, trained from the base model with the same data order and a cosine schedule "
            "over its own length). Does EKSFT close the gap to SFT with more training, and does it keep its "
            "entropy (and stay nearer the base model) while doing so?",
        ),
        ("table", *table),
    ]


def titles(summary: dict) -> dict[str, str]:
    """Method label -> the plain name of its objective (eksft.methods.Method.title)."""
    from eksft.methods import parse_method

    out = {BASE: "the base model", WARM: "the warm-start model (SFT on the demo's records, where training continues)"}
    for label in summary["seeds"][0]["runs"]:
        try:
            out[label] = parse_method(label).title
        except ValueError:
            out[label] = label
    return out


def sentences(summary: dict) -> list[str]:
    from eksft.eval.compare import difference_sentence, paired_difference

    names = titles(summary)
    labels = list(summary["seeds"][0]["models"])
    start = labels[0]
    seeds = summary["seeds"]
    out = []
    p1 = dict((name, g) for name, g, _ in ROWS)["pass@1"]
    for m in labels[1:]:
        if len(seeds) == 1:
            try:
                d = paired_difference(seeds[0]["eval"][start]["per_problem"], seeds[0]["eval"][m]["per_problem"], 1)
                out.append(difference_sentence(d, start, m))
                continue
            except (KeyError, TypeError, ValueError):
                pass
        out.append(
            f"{m} vs the {start} model, pass@1: {fmt(values(summary, p1, start))} → {fmt(values(summary, p1, m))}."
        )
    by_length = length_groups(summary)
    if "sft" in labels:
        out += claim_sentences(summary, names, start=start)
    elif by_length:  # --steps 20,80: each length's methods against that length's SFT
        for n, group in by_length.items():
            if f"sft[max_steps={n}]" in group:
                out += claim_sentences(summary, names, ref=f"sft[max_steps={n}]", methods=group)
        if not any(f"sft[max_steps={n}]" in g for n, g in by_length.items()):
            out.append(
                "No sft among the methods: the claims about EKSFT are stated against SFT, so none is judged here."
            )
    else:
        out.append("No sft among the methods: the claims about EKSFT are stated against SFT, so none is judged here.")
    return out


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


def blocks(summary: dict, out: Path) -> list[tuple]:
    cfg = summary["config"]
    mach = summary["machine"]
    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    self_regime = cfg.get("data_regime", "given") == "self"
    start = start_label(summary)
    b = [("h1", f"eksft demo: {start} vs " + " vs ".join(cfg["methods"]))]
    training = (
        f"fine-tuned on {cfg['train_size']} `{cfg['task']}` worked solutions ending in \\boxed{{}}: "
        f"{steps_text(cfg['steps'])} AdamW steps × {cfg['batch_size']} sequences"
    )
    if self_regime:
        training = (
            f"in the paper's data regime: SFT on {cfg['train_size']} `{cfg['task']}` worked solutions for "
            f"{steps_text(cfg['steps'])} steps × {cfg['batch_size']} sequences (the `{start}`), then every method "
            f"continued from that model for {cfg['continue_steps']} steps × {cfg['batch_size']} sequences on its "
            "own verified-correct answers to new problems (section Self-generated traces; every KL here is to the "
            f"`{start}`)"
        )
    b.append(
        (
            "p",
            f"Model `{cfg['model']}` ({summary['base_model']}), {training}, learning rate "
            f"{cfg['learning_rate']:g} (cosine), full fine-tuning "
            f"in fp32; EKSFT ρ = {cfg['rho']}, λ_H = {cfg['lambda_entropy']} per unit of H / ln V (the "
            f"published unit; a method's [entropy_unit=nats] makes it per nat), λ_KL = {cfg['lambda_kl']} per "
            f"nat, unless a method's brackets say otherwise. "
            f"Evaluation: {cfg['eval_problems']} held-out problems{_problem_range(cfg)} × {cfg['samples']} "
            "samples at temperature "
            f"1.0, at most {cfg['max_new_tokens']} new tokens, answers checked with math-verify (gold first). "
            f"Seeds: {', '.join(str(r['seed']) for r in summary['seeds'])}."
            + (" QUICK settings: a smoke run, not a result." if cfg["quick"] else ""),
        )
    )
    load = summary.get("load_average")  # [start, end] (older runs) or [start, highest at a stage, end]
    load_text = ""
    if load:
        load_text = (
            f" Machine load (1-minute load average) at start {load[0]:.1f}, highest at a stage "
            f"{max(load):.1f}, at end {load[-1]:.1f}"
        )
        load_text += (
            ": above the CPU count, so other work shared the cores and the wall time is longer than on an idle machine."
            if max(load) > mach["cpu_count"] + 0.5
            else "."
        )
    b.append(
        (
            "p",
            f"Machine: {mach['platform']}, {mach['cpu_count']} CPUs ({mach['torch_threads']} torch threads), "
            f"torch {mach['torch']}. Wall time {summary['wall_seconds'] / 60:.1f} min, peak memory "
            f"{summary['peak_rss_gb']:.2f} GiB (process peak RSS).{load_text}",
        )
    )
    b.append(("h2", "Results"))
    header, rows = results_table(summary)
    names = titles(summary)
    b.append(
        (
            "p",
            interval_note(summary)
            + " Methods: "
            + "; ".join(f"`{m}` = {names.get(m, m)}" for m in summary["seeds"][0]["models"])
            + ".",
        )
    )
    b.append(("table", header, rows))
    b += length_blocks(summary)
    b += rho_blocks(summary, plots)
    b += trace_blocks(summary)
    b.append(("h2", "What the numbers say"))
    b.append(("ul", sentences(summary)))
    b.append(("h2", "Plots"))
    b.append(("img", plot_pass_at_k(summary, plots / "pass_at_k.png"), "pass@k curves"))
    b.append(
        (
            "img",
            plot_training(summary, plots / "training.png"),
            "cross-entropy on the trained targets, entropy and KL to the "
            + ("base model" if start == BASE else f"{start} model")
            + " over training steps (seed 0)",
        )
    )
    for path, caption in [
        (out / "drift" / "drift_histogram.png", "relative parameter change (seed 0)"),
        (
            out / "probe" / "probe.png",
            "probability of each token of a held-out solution under each model; EKSFT's would-be mask marked",
        ),
        (out / "masks" / "masks.png", "EKSFT mask statistics over training steps"),
    ]:
        if path.exists():
            b.append(("img", path, caption))
    b += masked_targets_blocks(out)
    b.append(
        (
            "p",
            "Files: `report.json` (every number, per seed), `seed*/eval/` (samples.jsonl, results.json), "
            "`seed*/<method>/metrics.jsonl` (training metrics), `drift/`, `probe/` (probe.html: the heat map "
            "with hover values), `masks/`."
            + (
                " Self data regime: `seed*/warm/` (the warm start), `seed*/traces/` (new_problems.jsonl, the "
                "warm start's samples.jsonl, and traces.jsonl, the training file of the continued runs)."
                if self_regime
                else ""
            ),
        )
    )
    return b


def trace_blocks(summary: dict) -> list[tuple]:
    """The self data regime's traces: per seed, how many new problems and answers, how many were correct and kept."""
    seeds = [s for s in summary["seeds"] if s.get("traces")]
    if not seeds:
        return []
    cfg = summary["config"]
    rows = []
    for s in seeds:
        t = s["traces"]
        rows.append(
            [
                str(s["seed"]),
                str(t["problems"]),
                str(t["samples"]),
                f"{t['correct_samples']} ({t['acceptance_rate']:.1%})",
                str(t["duplicates_dropped"]),
                str(t["kept_traces"]),
                f"{t['problems_with_a_trace']} ({t['problems_with_a_trace'] / max(t['problems'], 1):.1%})",
                f"{t['mean_trace_tokens']:.1f}",
                f"{s['warm']['train_seconds'] / 60:.1f} + {t['sampling_seconds'] / 60:.1f}",
            ]
        )
    header = [
        "seed",
        "new problems",
        "answers",
        "correct (acceptance)",
        "duplicates dropped",
        "traces kept",
        "problems with a trace",
        "tokens per correct answer",
        "warm start + sampling (min)",
    ]
    epochs = [cfg["continue_steps"] * cfg["batch_size"] / max(s["traces"]["kept_traces"], 1) for s in seeds]
    return [
        ("h2", "Self-generated traces"),
        (
            "p",
            f"The `{start_label(summary)}` model answered {cfg['trace_problems']} new `{cfg['task']}` problems "
            f"{cfg['trace_samples']} times each at temperature 1.0 (at most {cfg['max_new_tokens']} new tokens), "
            "with the evaluation's prompt and math-verify check. The new problems are neither training records, "
            "held-out solutions nor evaluation problems. Only correct answers were kept, each distinct answer to "
            "a problem once; they are the training data of every continued method "
            f"({cfg['continue_steps']} steps × {cfg['batch_size']} sequences: "
            + ", ".join(f"{e:.1f}" for e in epochs)
            + " epochs of them).",
        ),
        ("table", header, rows),
    ]


def masked_targets_blocks(out: Path) -> list[tuple]:
    """The targets each masked run (seed 0) kept out of cross-entropy most often (``masks/masks.json``, from the
    runs' mask_targets.json; eksft.analysis.masks)."""
    from eksft.analysis.masks import TARGETS_HEADER, targets_note, targets_table

    path = out / "masks" / "masks.json"
    if not path.exists():
        return []
    b = []
    for name, run in json.loads(path.read_text()).items():
        targets = run.get("targets")
        if targets:
            b.append(("h2", f"Targets `{name}` kept out of cross-entropy (seed 0)"))
            b.append(("p", targets_note(targets)))
            b.append(("table", TARGETS_HEADER, targets_table(targets)))
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


def inline(text: str) -> str:
    """Escaped text with Markdown `code` spans rendered as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def to_html(bl: list[tuple]) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>eksft demo report</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;line-height:1.45}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}"
        "td:first-child,th:first-child{text-align:left}img{max-width:100%}figcaption{color:#555}"
        "code{background:#f3f3f3;padding:0 .2em;border-radius:3px}"
        "</style></head><body>"
    ]
    for block in bl:
        kind = block[0]
        if kind in ("h1", "h2", "p"):
            parts.append(f"<{kind}>{inline(block[1])}</{kind}>")
        elif kind == "ul":
            parts.append("<ul>" + "".join(f"<li>{inline(x)}</li>" for x in block[1]) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{html.escape(h)}</th>" for h in block[1])
            body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in block[2])
            parts.append(f"<table><tr>{head}</tr>{body}</table>")
        elif kind == "img":
            data = base64.b64encode(Path(block[1]).read_bytes()).decode()
            parts.append(
                f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(block[2])}'>"
                f"<figcaption>{html.escape(block[2])}</figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts)


def rerender(out: str | Path) -> list[Path]:
    """Write the report again from a finished run's ``summary.json`` (e.g. after a report change); trains nothing."""
    out = Path(out)
    return write_report(json.loads((out / "summary.json").read_text()), out)


def write_report(summary: dict, out: Path) -> list[Path]:
    bl = blocks(summary, out)
    md, page, js = out / "report.md", out / "report.html", out / "report.json"
    md.write_text(to_markdown(bl, out))
    page.write_text(to_html(bl))
    header, rows = results_table(summary)
    js.write_text(json.dumps({**summary, "table": {"header": header, "rows": rows}}, indent=1, default=str) + "\n")
    return [md, page, js]


def _problem_range(cfg: dict) -> str:
    """`` (problems 64-127 of the set)`` when the run skipped some (DemoConfig.eval_offset), else nothing."""
    first = cfg.get("eval_offset", 0)
    return f" (problems {first}-{first + cfg['eval_problems'] - 1} of the set)" if first else ""
