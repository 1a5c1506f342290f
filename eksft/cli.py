"""The ``eksft`` command line: ``eksft COMMAND [ARGS]``.

Each command lives in ``eksft/commands/<name>.py`` and exposes ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. Modules are imported only when their command runs, so ``eksft --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: command name -> module. Add a line here to add a command.
COMMANDS = {
    "demo": "eksft.commands.demo",
    "losses": "eksft.commands.losses",
    "train": "eksft.commands.train",
    "eval": "eksft.commands.eval",
    "drift": "eksft.commands.drift",
    "probe": "eksft.commands.probe",
    "masks": "eksft.commands.masks",
    "rl": "eksft.commands.rl",
    "pipeline": "eksft.commands.pipeline",
    "compare": "eksft.commands.compare",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eksft", description="Entropy-KL Selective Fine-Tuning and friends.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
