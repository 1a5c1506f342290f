"""``eksft masks``: plot EKSFT mask statistics (masked shares, IoU of M_H and M_KL, entropy and KL means) over
training steps, several runs overlaid (paper Appendix F)."""

from __future__ import annotations

import argparse

HELP = "Plot mask statistics from RUN_DIR/metrics.jsonl over steps, several runs overlaid (PNG + JSON)."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="training run folders holding metrics.jsonl")
    p.add_argument("--output-dir", required=True, help="masks.json and masks.png go here")


def run(args) -> int:
    from eksft.analysis.masks import run_masks

    try:
        report = run_masks(args.runs, args.output_dir)
    except ValueError as err:
        raise SystemExit(f"eksft masks: {err}") from None
    keys = ("masked_fraction", "iou_entropy_kl", "entropy_mean", "kl_mean")
    print(f"{'run':30} {'steps':>6} " + " ".join(f"{k:>16}" for k in keys) + "   (means over the last quarter)")
    for name, r in report.items():
        s = r["summary"]
        vals = " ".join(f"{s[k]['last_quarter_mean']:16.4f}" if k in s else f"{'-':>16}" for k in keys)
        print(f"{name[-30:]:30} {len(r['steps']):6d} {vals}")
    print(f"\nwrote {args.output_dir}/masks.json and masks.png")
    return 0
