"""``report.md``, a self-contained ``report.html`` (images inlined) and ``report.json`` for the demo.

The report is built as a list of blocks (heading, paragraph, table, image) rendered twice, so the Markdown and the
HTML always say the same thing. Every number carries a 95% interval: over seeds (Student t) when there are several,
else a bootstrap over the evaluation problems or the held-out solutions; the verdicts (``claims.py``) come from
intervals of the differences, including when EKSFT does not beat SFT.

This module writes the sections (:func:`blocks`) and the files (:func:`write_report`, :func:`rerender`); the numbers
come from ``tables.py``, the figures from ``plots.py`` and ``rho_axis.py``, the two renderings from ``render.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

from .claims import claim_sentences
from .config import BASE, WARM
from .plots import plot_pass_at_k, plot_training
from .render import to_html, to_markdown
from .rho_axis import rho_blocks
from .stats import fmt
from .tables import ROWS, interval_note, length_groups, length_table, results_table, start_label, steps_text, values


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
            f"torch {mach['torch']}. Wall time {summary['wall_seconds'] / 60:.1f} min{_resumed(summary)}, "
            f"peak memory {summary['peak_rss_gb']:.2f} GiB (process peak RSS).{load_text}",
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


def _resumed(summary: dict) -> str:
    """Say so when the wall time covers only part of the run (a rerun that reused models trained earlier)."""
    n = summary.get("resumed_trainings", 0)
    if not n:
        return ""
    return (
        f" for this invocation, which reused {n} model{'s' if n > 1 else ''} trained into this folder by earlier"
        " invocations (their training times are in the table; the whole run took longer)"
    )
