"""Flags and errors as the command line spells them.

One convention for every command: each multi-word flag is accepted with dashes and with underscores
(``--output-dir`` and ``--output_dir``) and ``--help`` shows the dash form. :class:`Parser` does it for every
``add_argument`` (eksft/cli.py builds every command's parser with it; TRL-config fields come through
``HfArgumentParser``, which calls the same method), so no command spells its flags by hand.

Library errors: the library names what is wrong by its Python name: a config field (``DemoConfig.task``,
``EvalConfig.sampling.n``) or a function's argument (``load_result.model``), so a Python caller reads what to change.
When such an error reaches ``eksft COMMAND``, :func:`cli_message` rewrites those names into the command's flags
(``--task``, ``--n``).
"""

from __future__ import annotations

import argparse
import copy
import re


def cli_message(err, owners: tuple[str, ...] = (), renames: dict[str, str] | None = None) -> str:
    """The text of ``err`` with each ``OWNER.field`` (or ``OWNER.part.field``; ``OWNER`` one of ``owners``) written
    as the flag ``--field`` (underscores as dashes) and each name in ``renames`` as the flag it maps to (a flag
    spelled otherwise, ``{"EvalConfig.ks": "--k"}``, or a function's argument). Other text is left as it is."""
    renames = renames or {}
    names = [re.escape(name) for name in sorted(renames, key=len, reverse=True)]
    names += [rf"{re.escape(owner)}(?:\.[a-z_]\w*)+" for owner in owners]
    if not names:
        return str(err)
    # A whole name: not inside a longer one (a sentence's final full stop may follow it).
    pattern = re.compile(rf"(?<![\w.])(?:{'|'.join(names)})(?!\w|\.\w)")

    def flag(match: re.Match) -> str:
        name = match.group(0)
        return renames.get(name) or "--" + name.rsplit(".", 1)[1].replace("_", "-")

    return pattern.sub(flag, str(err))


def dashed(option: str) -> str:
    """``--output_dir`` -> ``--output-dir`` (the spelling ``--help`` shows); a short option is left as it is."""
    return "--" + option[2:].replace("_", "-") if option.startswith("--") else option


def underscored(option: str) -> str:
    """``--output-dir`` -> ``--output_dir`` (the other accepted spelling)."""
    return "--" + option[2:].replace("-", "_") if option.startswith("--") else option


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose every long option is accepted in both spellings: the dash form first (shown by
    :class:`HelpFormatter` and in the usage line), then the underscore form. Sub-command parsers made by
    ``add_subparsers`` are of this class too. The ``dest`` is unchanged (argparse derives it from the first long
    option either way)."""

    def add_argument(self, *names, **kwargs):
        if names and all(n.startswith("-") for n in names):
            spellings = [dashed(n) for n in names] + [underscored(n) for n in names]
            names = tuple(dict.fromkeys(spellings))  # unique, dash forms first
        return super().add_argument(*names, **kwargs)

    def error(self, message):
        """A flag argparse refuses (a wrong type, a choice not offered, a missing argument): one line, exit code 2,
        the flag named in the spelling ``--help`` shows (argparse's ``--a-b/--a_b`` is written ``--a-b``)."""
        message = re.sub(r"(--[\w-]+)/--[\w-]+", r"\1", message)
        self.exit(2, f"{self.prog}: {message}; `{self.prog} --help` lists the flags and their values.\n")

    def _get_option_tuples(self, option_string):
        """An abbreviation (``--output``) that matches both spellings of one flag is not ambiguous."""
        found = {}
        for match in super()._get_option_tuples(option_string):
            found.setdefault(id(match[0]), match)  # match[0]: the action
        return list(found.values())


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` lists each flag once, in its dash form (the underscore spelling is accepted, not shown)."""

    def _format_action_invocation(self, action):
        shown = [s for s in action.option_strings if s == dashed(s) or dashed(s) not in action.option_strings]
        if shown != action.option_strings:
            action = copy.copy(action)
            action.option_strings = shown
        return super()._format_action_invocation(action)


def add_smoke_flag(p: argparse.ArgumentParser, where: str = "OUTPUT_DIR-smoke") -> None:
    """``--smoke`` of ``eksft train`` / ``rl``: absent from the namespace unless given, like the field flags."""
    p.add_argument(
        "--smoke",
        action="store_true",
        default=argparse.SUPPRESS,
        help="run this config on a tiny random model of the same architecture (2 steps, capped lengths, the same "
        f"engine on 2 CPU processes) into {where} and print a checklist (docs/training.md)",
    )
