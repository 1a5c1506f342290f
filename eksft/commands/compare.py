"""``eksft compare RESULTS_A RESULTS_B``: B − A on pass@k with a paired bootstrap interval over problems.

Reads two finished ``eksft eval`` output folders (their ``results.json``), checks that they hold the same problems
and were sampled with the same settings, and prints per benchmark and k: each model's pass@k with its bootstrap
interval, the difference B − A in points with its paired bootstrap interval, the share of resamples in which B was
higher, and one plain sentence. Several seeds: give comma-separated folders on both sides (paired by position); a
seed-level Student-t interval of the difference is added. Details: docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "Compare two eksft eval result folders: B − A on pass@k with a paired bootstrap interval over problems."


def add_arguments(p: argparse.ArgumentParser) -> None:
    from eksft.eval.compare import PAIRED_SETTINGS
    from eksft.eval.intervals import RESAMPLES

    from .eval import _ks

    p.add_argument(
        "results_a",
        metavar="RESULTS_A",
        help="eksft eval output folder of model A (the baseline); comma-separated folders for several seeds",
    )
    p.add_argument("results_b", metavar="RESULTS_B", help="folder(s) of model B, as many as for A, same order")
    p.add_argument(
        "--model-a", default=None, help="model of A when its folder holds several (name, path part or unique substring)"
    )
    p.add_argument("--model-b", default=None, help="model of B when its folder holds several")
    p.add_argument("--label-a", default=None, help="name of A in the output (default: the model's folder name)")
    p.add_argument("--label-b", default=None, help="name of B in the output")
    p.add_argument("--k", type=_ks, default=None, help="comma-separated k (default: the ks both runs reported)")
    p.add_argument("--bootstrap-resamples", type=int, default=RESAMPLES, help="resamples of the paired bootstrap")
    p.add_argument("--bootstrap-seed", type=int, default=0, help="seed of those resamples")
    p.add_argument(
        "--ignore-setting",
        action="append",
        default=[],
        choices=PAIRED_SETTINGS,
        help="pair the folders even though this sampling setting differs (repeatable)",
    )
    p.add_argument(
        "--answer-check",
        choices=["run", "last_boxed", "last_number"],
        default="run",
        help="which stored answer check counts as correct: the runs' own --answer-extraction, or the "
        "last_boxed / last_number check every sample also records (format vs skill failures)",
    )
    p.add_argument("--output-json", default=None, help="also write the comparison to this JSON file")


def _labels(args, a, b) -> tuple[str, str]:
    name_a, name_b = Path(a.model.rstrip("/")).name or a.model, Path(b.model.rstrip("/")).name or b.model
    if name_a == name_b:
        name_a, name_b = Path(a.folder).name, Path(b.folder).name
    if name_a == name_b:
        name_a, name_b = "A", "B"
    return args.label_a or name_a, args.label_b or name_b


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}".replace("-", "−")


def _signed(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:+.1f}".replace("-", "−")


def compare(args, log=print) -> dict:
    """Run the comparison; print it with ``log`` and return it as a JSON-ready dict. Raises ValueError."""
    from eksft.eval.compare import (
        check_pairable,
        compare_results,
        difference_sentence,
        load_result,
        seed_level_difference,
        seed_sentence,
    )
    from eksft.eval.intervals import bootstrap_method, pass_at_k_interval, seed_interval

    folders_a = [f for f in args.results_a.split(",") if f]
    folders_b = [f for f in args.results_b.split(",") if f]
    if len(folders_a) != len(folders_b):
        raise ValueError(
            f"{len(folders_a)} folder(s) for A but {len(folders_b)} for B; give one B folder per A "
            "folder (seeds are paired by position)"
        )
    if args.bootstrap_resamples < 1:
        raise ValueError(f"--bootstrap-resamples {args.bootstrap_resamples}: need at least 1")
    pairs = []
    for fa, fb in zip(folders_a, folders_b):
        check = None if args.answer_check == "run" else args.answer_check
        a, b = load_result(fa, args.model_a, check), load_result(fb, args.model_b, check)
        check_pairable(a, b, args.ignore_setting)
        pairs.append((a, b))
    for a, _b in pairs[1:]:  # every seed on the same problems and settings as the first
        check_pairable(pairs[0][0], a, args.ignore_setting)
    a0, b0 = pairs[0]
    ks = args.k or sorted(set(a0.ks) & set(b0.ks)) or [1]
    la, lb = _labels(args, a0, b0)
    opts = {"resamples": args.bootstrap_resamples, "seed": args.bootstrap_seed}
    per_seed = [compare_results(a, b, ks, **opts) for a, b in pairs]

    s = a0.settings
    log(f"A = {la}: {', '.join(f'{p[0].folder} ({p[0].model})' for p in pairs)}")
    log(f"B = {lb}: {', '.join(f'{p[1].folder} ({p[1].model})' for p in pairs)}")
    log(
        f"settings: n {s['n']} samples per problem, temperature {s['temperature']}, top-p {s['top_p']}, top-k "
        f"{s['top_k']}, at most {s['max_new_tokens']} new tokens, answer extraction {s['extraction']}"
        + (f" (ignored differences: {', '.join(args.ignore_setting)})" if args.ignore_setting else "")
    )
    out = {
        "a": {"label": la, "folders": folders_a, "model": a0.model},
        "b": {"label": lb, "folders": folders_b, "model": b0.model},
        "settings": s,
        "ks": ks,
        "bootstrap": opts,
        "benchmarks": {},
    }
    for bench in a0.per_problem:
        num = len(a0.per_problem[bench])
        log("")
        log(f"### {bench} ({num} problems)")
        log(
            f"pass@k in percent with its {bootstrap_method(num, **opts)}; B − A in points with the paired "
            f"bootstrap interval (same resamples); 'B > A': share of resamples in which {lb} scored higher."
        )
        log("")
        bench_out = {"seeds": [], "seed_level": []}
        for i, ((a, b), diffs) in enumerate(zip(pairs, per_seed)):
            if len(pairs) > 1:
                log(f"seed {i + 1}: {a.folder} vs {b.folder}")
                log("")
            log(f"| metric | {la} | {lb} | {lb} − {la} | 95% interval | B > A |")
            log("|---|---|---|---|---|---|")
            rows = []
            for k, d in zip(ks, diffs[bench]):
                ia = pass_at_k_interval(list(a.per_problem[bench].values()), k, **opts)
                ib = pass_at_k_interval(list(b.per_problem[bench].values()), k, **opts)
                log(
                    f"| pass@{k} | {_pct(ia.estimate)} [{_pct(ia.low)}, {_pct(ia.high)}] | {_pct(ib.estimate)} "
                    f"[{_pct(ib.low)}, {_pct(ib.high)}] | {_signed(d.difference)} | [{_signed(d.low)}, "
                    f"{_signed(d.high)}] | {d.share_b_greater:.0%} |"
                )
                rows.append(
                    {
                        **d.to_dict(),
                        "interval_a": ia.as_list(),
                        "interval_b": ib.as_list(),
                        "sentence": difference_sentence(d, la, lb),
                    }
                )
            log("")
            for r in rows:
                log(f"- {r['sentence']}")
            log("")
            bench_out["seeds"].append(rows)
        if len(pairs) > 1:
            log(f"over {len(pairs)} seeds (mean, 95% Student-t interval over seeds):")
            log("")
            log(f"| metric | {la} | {lb} | {lb} − {la} | 95% t-interval |")
            log("|---|---|---|---|---|")
            for j, k in enumerate(ks):
                diffs = [ps[bench][j] for ps in per_seed]
                ta, tb = seed_interval([d.mean_a for d in diffs]), seed_interval([d.mean_b for d in diffs])
                td = seed_level_difference(diffs)
                log(
                    f"| pass@{k} | {_pct(ta.estimate)} [{_pct(ta.low)}, {_pct(ta.high)}] | {_pct(tb.estimate)} "
                    f"[{_pct(tb.low)}, {_pct(tb.high)}] | {_signed(td.estimate)} | [{_signed(td.low)}, "
                    f"{_signed(td.high)}] |"
                )
                bench_out["seed_level"].append(
                    {
                        "metric": f"pass@{k}",
                        "mean_a": ta.estimate,
                        "mean_b": tb.estimate,
                        "difference": td.estimate,
                        "low": td.low,
                        "high": td.high,
                        "method": td.method,
                        "sentence": seed_sentence(diffs, la, lb),
                    }
                )
            log("")
            for r in bench_out["seed_level"]:
                log(f"- {r['sentence']}")
        out["benchmarks"][bench] = bench_out
    return out


def run(args) -> int:
    from .flags import cli_message

    try:
        result = compare(args)
    except ValueError as err:  # the library's argument names as this command's flags
        flags = {
            "compare_results.ks": "--k",
            "load_result.model": "--model-a/--model-b",
            "check_pairable.ignore": "--ignore-setting",
        }
        print(f"eksft compare: {cli_message(err, renames=flags)}", file=sys.stderr)
        return 2
    if args.output_json:
        Path(args.output_json).write_text(json.dumps(result, indent=2) + "\n")
    return 0
