"""One training step of two checkouts of eksft, side by side: is a refactor as fast as the code it replaced?

    git worktree add /tmp/eksft-old <old commit>
    .venv/bin/python benchmarks/train_step_trees.py --old /tmp/eksft-old            # fused EKSFT, SmolLM2, 8 x 256
    .venv/bin/python benchmarks/train_step_trees.py --old /tmp/eksft-old --rounds 6 --methods eksft_fused sft_logits

Each round runs ``benchmarks/train_step.py`` (same method, batch, model, threads) once in each tree, as a subprocess
whose ``PYTHONPATH`` is that tree, alternating which tree goes first; a round times ``--repeats`` steps after
``--warmup`` untimed ones. Every timed step of every round is pooled per tree and method. Printed JSON (one line per
method, then a summary): the median step time of each tree, ``ratio_new_over_old`` (median over median), the
per-round ratios and their range, and the run's settings. Steps of the two trees run one after the other, never at
the same time; a machine busy with other work widens the per-round range, which is why it is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NEW = os.path.dirname(HERE)


def run_tree(tree: str, args) -> dict[str, list[float]]:
    """``{method: timed step seconds}`` of one ``train_step.py`` run in ``tree``."""
    cmd = [sys.executable, os.path.join(tree, "benchmarks", "train_step.py"), "--methods", *args.methods]
    cmd += ["--model", args.model, "--batch", str(args.batch), "--seq-len", str(args.seq_len)]
    cmd += ["--repeats", str(args.repeats), "--warmup", str(args.warmup), "--threads", str(args.threads)]
    env = dict(os.environ, PYTHONPATH=tree, OMP_NUM_THREADS=str(args.threads))
    done = subprocess.run(cmd, env=env, cwd=tree, capture_output=True, text=True, timeout=args.timeout)
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    times = {r["method"]: r["times_s"] for r in rows if r.get("method") in args.methods and r.get("times_s")}
    missing = sorted(set(args.methods) - set(times))
    if done.returncode or missing:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise SystemExit(f"train_step.py in {tree} gave no times for {missing} (exit {done.returncode}): {tail}")
    return times


def commit(tree: str) -> str:
    out = subprocess.run(["git", "-C", tree, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or "?"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old", required=True, help="a checkout of the code to compare against (e.g. a git worktree)")
    p.add_argument("--new", default=NEW, help="the checkout under test (default: this one)")
    p.add_argument("--methods", nargs="+", default=["eksft_fused"], help="train_step.py methods")
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--rounds", type=int, default=4, help="rounds; each runs both trees once")
    p.add_argument("--repeats", type=int, default=3, help="timed steps per tree per round")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per tree per round")
    p.add_argument("--threads", type=int, default=1, help="torch threads of each subprocess")
    p.add_argument("--timeout", type=int, default=3600, help="seconds per subprocess")
    args = p.parse_args(argv)
    trees = {"old": os.path.abspath(args.old), "new": os.path.abspath(args.new)}
    pooled = {name: {m: [] for m in args.methods} for name in trees}
    per_round = {m: [] for m in args.methods}
    began = time.time()
    loads = [os.getloadavg()[0]]
    for rnd in range(args.rounds):
        order = ["old", "new"] if rnd % 2 == 0 else ["new", "old"]
        got = {}
        for name in order:
            got[name] = run_tree(trees[name], args)
            loads.append(os.getloadavg()[0])
        for m in args.methods:
            for name in trees:
                pooled[name][m] += got[name][m]
            per_round[m].append(statistics.median(got["new"][m]) / statistics.median(got["old"][m]))
    settings = {
        "bench": "train_step_trees",
        "model": args.model,
        "batch": args.batch,
        "seq_len": args.seq_len,
        "threads": args.threads,
        "rounds": args.rounds,
        "steps_per_round": args.repeats,
        "old": {"path": trees["old"], "commit": commit(trees["old"])},
        "new": {"path": trees["new"], "commit": commit(trees["new"])},
    }
    ratios = {}
    for m in args.methods:
        old, new = statistics.median(pooled["old"][m]), statistics.median(pooled["new"][m])
        ratios[m] = round(new / old, 4)
        row = {
            **settings,
            "method": m,
            "old_time_s": round(old, 4),
            "new_time_s": round(new, 4),
            "ratio_new_over_old": ratios[m],
            "round_ratios": [round(r, 4) for r in per_round[m]],
            "round_ratio_range": [round(min(per_round[m]), 4), round(max(per_round[m]), 4)],
            "old_times_s": pooled["old"][m],
            "new_times_s": pooled["new"][m],
        }
        print(json.dumps(row), flush=True)
    summary = {
        "bench": "train_step_trees",
        "summary": True,
        "ratio_new_over_old": ratios,
        "wall_s": round(time.time() - began, 1),
        "load_average": {"start": loads[0], "max": max(loads), "end": loads[-1]},
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
