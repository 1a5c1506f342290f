"""``eksft demo``: train SFT and EKSFT (and any ``--methods``) from a real pretrained model on this CPU, evaluate
every model, and write ``report.md`` / ``report.html``; ``--data-regime self`` continues every method from an SFT
warm start on that model's own verified answers (eksft/demo/selftrace.py). The README's main command. Details:
docs/demo.md."""

from __future__ import annotations

import argparse
import sys

HELP = (
    "Base vs SFT vs EKSFT on SmolLM2-135M on a laptop CPU, with a report (about 12 minutes on a 2-core CPU; "
    "--quick about 1 minute). --data-regime self: the paper's data regime, every method continued from an SFT warm "
    "start on that model's own verified-correct answers."
)


def split_methods(text: str) -> list[str]:
    from eksft.methods import split_methods as split

    return split(text)


def step_list(text: str) -> int | list[int]:
    """``20`` -> 20, ``20,80`` -> [20, 80]."""
    try:
        values = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give whole numbers of steps, comma-separated (20 or 20,80)"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("give at least one number of steps (20 or 20,80)")
    return values[0] if len(values) == 1 else values


def add_arguments(p: argparse.ArgumentParser) -> None:
    from eksft.config_io import range_text
    from eksft.demo.config import FIELDS

    for f in FIELDS:
        text = f.metadata["help"].replace("%", "%%")  # argparse formats help with %
        if "range" in f.metadata:
            text += f"; allowed: {range_text(f.metadata['range'])}"
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool":  # annotations are strings (from __future__ import annotations)
            p.add_argument(flag, action="store_true", default=argparse.SUPPRESS, help=text)
        elif f.name == "methods":
            p.add_argument(flag, default=argparse.SUPPRESS, help=text + " (default: sft,eksft)", type=split_methods)
        elif f.name == "steps":
            p.add_argument(flag, default=argparse.SUPPRESS, help=f"{text} (default: {f.default})", type=step_list)
        else:
            kind = {"int": int, "float": float, "str": str}.get(str(f.type), str)
            p.add_argument(flag, type=kind, default=argparse.SUPPRESS, help=f"{text} (default: {f.default})")


def run(args) -> int:
    from eksft.demo.config import DemoConfig, with_quick
    from eksft.demo.run import run_demo

    from .flags import cli_message

    explicit = {k for k in vars(args) if not k.startswith("_") and k != "command"}
    cfg = with_quick(DemoConfig(**{k: getattr(args, k) for k in explicit}), explicit)

    def log(text: str) -> None:
        print(text, flush=True)

    try:
        run_demo(cfg, log=log)
    except ValueError as err:  # DemoConfig.task -> --task: the command's flags
        print(f"eksft demo: {cli_message(err, ('DemoConfig',))}", file=sys.stderr)
        return 2
    return 0
