"""``eksft masks``: plot EKSFT mask statistics (masked shares, IoU of M_H and M_KL, entropy and KL means) over
training steps, several runs overlaid (paper Appendix F); and the targets each run masked most often, with their
token text and final probability (RUN_DIR/mask_targets.json, written by training)."""

from __future__ import annotations

import argparse

HELP = (
    "Plot mask statistics from RUN_DIR/metrics.jsonl over steps, several runs overlaid (PNG + JSON), and list the "
    "targets most often masked (RUN_DIR/mask_targets.json)."
)
#: where masks.json and masks.png go without --output-dir: a folder of the first RUN_DIR (no training file is named so)
DEFAULT_OUTPUT = "masks"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="training run folders holding metrics.jsonl")
    p.add_argument(
        "--output-dir",
        default=argparse.SUPPRESS,
        help=f"masks.json and masks.png go here (default: {DEFAULT_OUTPUT}/ in the first RUN_DIR)",
    )


def run(args) -> int:
    import os

    from eksft.analysis.masks import run_masks

    out = getattr(args, "output_dir", None) or os.path.join(args.runs[0], DEFAULT_OUTPUT)
    try:
        report = run_masks(args.runs, out)
    except ValueError as err:
        raise SystemExit(f"eksft masks: {err}") from None
    keys = ("masked_fraction", "iou_entropy_kl", "entropy_mean", "kl_mean")
    print(f"{'run':30} {'steps':>6} " + " ".join(f"{k:>16}" for k in keys) + "   (means over the last quarter)")
    for name, r in report.items():
        s = r["summary"]
        vals = " ".join(f"{s[k]['last_quarter_mean']:16.4f}" if k in s else f"{'-':>16}" for k in keys)
        print(f"{name[-30:]:30} {len(r['steps']):6d} {vals}")
    for name, r in report.items():
        if r["targets"]:
            print_targets(name, r["targets"])
    print(f"\nwrote {os.path.join(out, 'masks.json')} and masks.png")
    return 0


def print_targets(name: str, targets: dict) -> None:
    """The most-masked targets of one run (RUN_DIR/mask_targets.json), as training counted them."""
    from eksft.analysis.masks import top_targets

    rows = top_targets(targets)
    warned = targets.get("warned_at_step")
    print(
        f"\n{name}: targets most often masked over {targets['steps']} steps (token ids seen in at least half of them); "
        + (f"the persistent-mask warning fired at step {warned}" if warned else "no persistent-mask warning")
    )
    print(f"{'token':>16} {'masked':>7} {'steps all masked':>17} {'final p':>8}")
    for r in rows:
        steps = f"{r['steps_all_masked']}/{r['steps_seen']}"
        print(f"{r['text']!r:>16} {r['masked_share']:7.0%} {steps:>17} {r['final_prob']:8.3f}")
