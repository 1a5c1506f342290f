"""``eksft probe``: per-token probability and entropy of a reference solution under several models, with the
tokens EKSFT would mask (paper Appendix D)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Heat map of each model's probability for every token of a reference solution (HTML + PNG + JSON)."


def add_arguments(p: argparse.ArgumentParser) -> None:
    from eksft.eval.sampling import SamplingConfig
    from eksft.losses.eksft import RHO

    p.add_argument("models", nargs="+", metavar="MODEL", help="model folders or hub names; the first is the reference")
    p.add_argument("--problem", required=True, help="problem text, or @FILE to read it from a file")
    p.add_argument("--solution", required=True, help="reference solution text, or @FILE")
    p.add_argument("--output-dir", required=True, help="probe.json, probe.html, probe.png go here")
    p.add_argument("--rho", type=float, default=RHO, help="EKSFT masking ratio for the masked-token marks")
    p.add_argument("--instruction", default=SamplingConfig().instruction, help="appended to the problem")
    p.add_argument("--no-chat-template", action="store_true", help="raw prompt text (base models)")
    p.add_argument("--dtype", default="float32", help="float32 keeps probabilities exact; bfloat16 halves memory")


def _text(value: str) -> str:
    if value.startswith("@"):
        path = Path(value[1:])
        if not path.is_file():
            raise SystemExit(f"eksft probe: {path} does not exist (a leading @ means 'read from this file')")
        return path.read_text().strip()
    return value


def run(args) -> int:
    from eksft.analysis.probe import run_probe

    from .flags import cli_message

    try:
        report = run_probe(
            args.models,
            _text(args.problem),
            _text(args.solution),
            args.output_dir,
            instruction=args.instruction,
            chat_template=not args.no_chat_template,
            rho=args.rho,
            dtype=args.dtype,
        )
    except ValueError as err:
        raise SystemExit(f"eksft probe: {cli_message(err, renames={'build_inputs.solution': '--solution'})}") from None
    print(f"{len(report['tokens'])} solution tokens; reference model: {report['reference']}\n")
    print(f"{'model':40} {'mean p':>8} {'mean H':>8} {'masked':>8}")
    for name, r in report["models"].items():
        print(f"{name[-40:]:40} {r['mean_prob']:8.4f} {r['mean_entropy']:8.4f} {r['masked_fraction']:8.3f}")
    print(f"\nwrote {args.output_dir}/probe.json, probe.html, probe.png")
    return 0
