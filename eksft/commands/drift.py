"""``eksft drift``: how far tuned checkpoints moved from their base, per module type (paper Appendix C)."""

from __future__ import annotations

import argparse

HELP = "Relative parameter change of tuned models vs their base: JSON + histogram and threshold plots."


def _floats(text: str) -> list[float]:
    try:
        return sorted(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated numbers like 1e-4,1e-3") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("base", metavar="BASE", help="base checkpoint folder (safetensors) or hub name")
    p.add_argument("tuned", nargs="+", metavar="TUNED", help="tuned checkpoint folders, overlaid in the plots")
    p.add_argument("--output-dir", required=True, help="drift.json, drift_histogram.png, drift_thresholds.png")
    p.add_argument(
        "--thresholds",
        type=_floats,
        default=[1e-4, 1e-3, 1e-2, 1e-1],
        help="relative-change thresholds for the share-above table",
    )


def run(args) -> int:
    from eksft.analysis.drift import run_drift

    try:
        report = run_drift(args.base, args.tuned, args.output_dir, tuple(args.thresholds))
    except ValueError as err:
        raise SystemExit(f"eksft drift: {err}") from None
    labels = [f"{t:g}" for t in args.thresholds]
    print("share of parameters whose relative change exceeds each threshold\n")
    print(f"{'model':40} {'module':12} " + " ".join(f">{lab:>9}" for lab in labels))
    for name, r in report.items():
        rows = [("all", r["share_above"])] + [(k, v["share_above"]) for k, v in r["by_type"].items()]
        for kind, shares in rows:
            print(f"{name[-40:]:40} {kind:12} " + " ".join(f"{shares[lab]:10.4f}" for lab in labels))
        if r["missing_in_tuned"]:
            print(f"  (not in {name}: {len(r['missing_in_tuned'])} tensors, e.g. {r['missing_in_tuned'][0]})")
    print(f"\nwrote {args.output_dir}/drift.json, drift_histogram.png, drift_thresholds.png")
    return 0
