"""The ``eksft`` command line: ``eksft COMMAND [ARGS]``.

Each command lives in ``eksft/commands/<name>.py`` and exposes ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. Every command module is imported (each keeps its heavy imports — torch models, TRL, datasets
— inside its functions), but only the chosen command's ``add_arguments`` runs, so ``eksft --help`` loads none of
the config classes. Every multi-word flag takes both spellings, ``--output-dir`` and ``--output_dir``; ``--help``
shows the first (``eksft.commands.flags.Parser``).
"""

from __future__ import annotations

import argparse
import importlib
import os
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


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser. Given ``argv``, only the chosen command's flags are built: a command's ``add_arguments`` may
    import its config class (TRL for ``train`` / ``rl``), so ``eksft --help`` imports none of them. Without
    ``argv``, every command's flags."""
    chosen = next((a for a in argv if not a.startswith("-")), None) if argv is not None else None
    from eksft.commands.flags import HelpFormatter, Parser

    parser = Parser(prog="eksft", description="Entropy-KL Selective Fine-Tuning and friends.")
    parser.add_argument(
        "--debug", action="store_true", dest="_debug", help="show the traceback of an error (also: EKSFT_DEBUG=1)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP, formatter_class=HelpFormatter)
        if argv is None or name == chosen:
            module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    debug = args._debug or os.environ.get("EKSFT_DEBUG", "").lower() not in ("", "0", "false", "no")
    try:
        from eksft.compat import quiet_deepspeed_on_cpu

        quiet_deepspeed_on_cpu()
        return int(args._run(args) or 0)
    except _user_errors() as e:  # a user error (config, data, paths, settings): one line; a bug keeps its traceback
        if debug:
            raise
        message, code = str(e) or type(e).__name__, getattr(e, "exit_code", 2)
    prefix = f"eksft {args.command}: "
    print(message if message.startswith(prefix) else prefix + message, file=sys.stderr, flush=True)
    return code


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors whose message is the whole story (their raisers name the field, file or path and the fix)."""
    errors = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)
    diverged = sys.modules.get("eksft.train.trainer")  # loaded only by the commands that train
    compat = sys.modules.get("eksft.compat")  # a transformers/TRL release without a private method eksft uses
    return (
        errors + ((diverged.TrainingDiverged,) if diverged else ()) + ((compat.IncompatibleVersion,) if compat else ())
    )


if __name__ == "__main__":
    sys.exit(main())
