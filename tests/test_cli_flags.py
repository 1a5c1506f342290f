"""One CLI convention (issue 27): every multi-word flag of every ``eksft`` command takes both spellings,
``--output-dir`` and ``--output_dir``, and reaches the same value; ``--help`` shows the dash form only.

Generated from each command's parser (``eksft.cli.COMMANDS``, every action of its parser, the ~200 TRL config fields
of ``train`` and ``rl`` included), not from a list of flags: a flag added later is covered by construction. CPU,
a few seconds (argparse only; nothing runs).
"""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest

from eksft.cli import COMMANDS, build_parser
from eksft.commands.flags import dashed, underscored

CANDIDATES = ("2", "0.5", "true", "x")  # values tried in turn until the flag's type accepts one
#: transformers fields typed as an object (a dict, a ParallelismConfig), which no command-line string can set: their
#: two spellings are checked to be one action and to refuse alike, not to set a value (set them in the YAML)
OBJECT_FIELDS = {"liger_kernel_config", "parallelism_config"}


def command_parser(name: str) -> argparse.ArgumentParser:
    """The sub-parser of ``eksft NAME`` with all its flags (train / rl add their config fields on first parse)."""
    parser = build_parser([name])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    parse(sub, [])  # adds the lazily built fields of train / rl; other commands just refuse the empty line
    return sub


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace | None:
    """The namespace, or None where argparse refuses ``argv`` (its message silenced)."""
    with contextlib.suppress(SystemExit), contextlib.redirect_stderr(io.StringIO()):
        return parser.parse_args(argv)
    return None


def multi_word(action) -> list[str]:
    return [s for s in action.option_strings if s.startswith("--") and ("-" in s[2:] or "_" in s[2:])]


def required_argv(parser, skip) -> list[str]:
    """The least ``argv`` the parser accepts: a value for each positional and each required flag but ``skip``."""
    argv = []
    for action in parser._actions:
        if action is skip or isinstance(action, argparse._HelpAction):
            continue
        if not action.option_strings and action.nargs not in ("?", "*"):
            argv.append("x")
        elif action.option_strings and action.required:
            argv += [action.option_strings[0], "x"]
    return argv


def values_for(action) -> list[list[str]]:
    if action.nargs == 0:
        return [[]]
    if action.choices:
        return [[str(c)] for c in action.choices]
    return [[c] for c in CANDIDATES]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_multi_word_flag_takes_both_spellings(name):
    parser = command_parser(name)
    flags = [a for a in parser._actions if multi_word(a)]
    assert flags or name == "losses", f"eksft {name} has no multi-word flag: is its parser built?"
    checked, unsettable = [], []
    for action in flags:
        for option in multi_word(action):
            dash, under = dashed(option), underscored(option)
            assert {dash, under} <= set(action.option_strings), (name, action.option_strings)
            assert action.option_strings[0] == dashed(action.option_strings[0])  # the usage line shows the dash form
        before = parse(parser, required_argv(parser, skip=None))
        assert before is not None, (name, required_argv(parser, skip=None))
        base = required_argv(parser, skip=action)
        dash, under = dashed(multi_word(action)[0]), underscored(multi_word(action)[0])
        for value in values_for(action):
            with_dash = parse(parser, [*base, dash, *value])
            if with_dash is None or getattr(with_dash, action.dest, None) == getattr(before, action.dest, None):
                assert (parse(parser, [*base, under, *value]) is None) == (with_dash is None), (name, under, value)
                continue  # the flag's type refuses this value, or it is the default: try the next one
            with_underscore = parse(parser, [*base, under, *value])
            assert with_underscore == with_dash, (name, action.option_strings, value)
            checked.append(action.dest)
            break
        else:  # a type no command-line string satisfies (OBJECT_FIELDS): both spellings refused alike above
            assert action.type is not None and action.type not in (str, int, float), (name, action.option_strings)
            unsettable.append(action.dest)
    assert len(checked) + len(unsettable) == len(flags) and set(unsettable) <= OBJECT_FIELDS, unsettable


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_shows_the_dash_spelling_only(name):
    parser = command_parser(name)
    text = parser.format_help()
    for action in parser._actions:
        for option in multi_word(action):
            if option != dashed(option):
                assert f"{option} " not in text and f"{option}]" not in text and f"{option}\n" not in text, option
            else:
                assert option in text, option


def test_an_abbreviation_of_both_spellings_is_not_ambiguous():
    parser = command_parser("pipeline")
    assert parse(parser, ["c.yaml", "--report"]).report_only is True
    assert parse(parser, ["c.yaml", "--output_d", "o"]).output_dir == "o"
