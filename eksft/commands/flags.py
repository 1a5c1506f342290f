"""Library errors as the command line says them.

The library names what is wrong by its Python name: a config field (``DemoConfig.task``, ``EvalConfig.sampling.n``)
or a function's argument (``load_result.model``), so a Python caller reads what to change. When such an error
reaches ``eksft COMMAND``, :func:`cli_message` rewrites those names into the command's flags (``--task``, ``--n``).
"""

from __future__ import annotations

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
