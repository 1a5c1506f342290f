"""Answer checking with math-verify, gold first: ``verify(parse(gold), parse(prediction))`` (docs/evaluation.md).

math-verify bounds each parse and comparison with ``signal.alarm``, which only works in the main thread. There we
use its own time limit; in another thread we turn its timeouts off, warn once, and the check has no time limit.
"""

from __future__ import annotations

import re
import threading
import warnings
from dataclasses import dataclass

#: ``last_boxed``: the final ``\boxed{...}`` of the completion is the answer; none means wrong. Stray numbers in a
#: reasoning trace never count, and earlier boxed values (math-verify would merge every ``\boxed`` into one set,
#: so "\boxed{3} ... \boxed{51}" reads as {3, 51}) do not either.
#: ``math_verify``: the paper's raw call, ``parse(completion)`` with math-verify's defaults (falls back to the last
#: number or expression when nothing is boxed).
#: ``last_number``: the last number written in the completion (``-12``, ``3.5``, ``1,000``, ``3/4``), boxed or not:
#: for base models that never learned ``\boxed{}``. Scoring the same samples both ways tells a format failure
#: (right number, no box) from a skill failure (wrong number).
EXTRACTIONS = ("last_boxed", "math_verify", "last_number")

#: A number not glued to a word or another number: optional minus, digits with optional thousands commas, an
#: optional decimal part, an optional ``/denominator``.
_NUMBER = re.compile(r"(?<![\w.,/])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?(?!\w|\.\d)")

_warned = False


def _timeout(seconds: int | None) -> int | None:
    global _warned
    if threading.current_thread() is threading.main_thread():
        return seconds
    if not _warned and seconds:
        warnings.warn(
            "math-verify's time limit uses signal.alarm and only works in the main thread: answer checks "
            "from this thread run without one; call eksft.eval from the main thread to keep it",
            stacklevel=2,
        )
        _warned = True
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``, braces matched; None if there is none."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    i = text.find("{", start)
    if i < 0:
        return None
    depth = 0
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1 : j]
    return None  # unclosed: a truncated completion


def last_number(text: str) -> str | None:
    """The last number written in ``text`` (thousands commas removed); None if there is none."""
    found = _NUMBER.findall(text)
    return found[-1].replace(",", "") if found else None


def _parse(text: str, timeout: int | None):
    from math_verify import parse

    return parse(text, parsing_timeout=_timeout(timeout))


def parse_gold(gold: str, timeout: int | None = 5):
    """math-verify's parse of a gold answer; LaTeX gold is wrapped in ``$...$`` (bare LaTeX parses to nothing).

    Raises ValueError when nothing parses: the benchmark loader turns that into an error naming the record.
    """
    gold = str(gold).strip()
    text = gold if ("$" in gold or "\\boxed" in gold or "\\(" in gold) else f"${gold}$"
    parsed = _parse(text, timeout)
    # A real parse is [expression, string]; a lone string is math-verify's fallback for text it could not read.
    if len(parsed) < 2:
        raise ValueError(f"gold answer {gold!r} does not parse with math-verify")
    return parsed


def extract_answer(completion: str, extraction: str = "last_boxed", timeout: int | None = 5):
    """``(parsed, text)``: math-verify's parse of the completion's answer and its display string (None if none)."""
    if extraction not in EXTRACTIONS:
        raise ValueError(f"answer extraction {extraction!r} is not supported; choose one of {EXTRACTIONS}")
    if extraction == "last_boxed":
        boxed = last_boxed(completion)
        if boxed is None or not boxed.strip():
            return [], None
        parsed = _parse(f"$\\boxed{{{boxed}}}$", timeout)
        return parsed, (parsed[1] if len(parsed) > 1 else boxed.strip())
    if extraction == "last_number":
        number = last_number(completion)
        if number is None:
            return [], None
        return _parse(f"${number}$", timeout), number
    parsed = _parse(completion, timeout)
    return parsed, (str(parsed[1]) if len(parsed) > 1 else None)


@dataclass
class Verdict:
    answer: str | None  # extracted answer as math-verify prints it; None when there is none
    correct: bool


def check_answer(gold, completion: str, *, extraction: str = "last_boxed", timeout: int | None = 5) -> Verdict:
    """Is ``completion``'s answer equal to ``gold``? ``gold`` is a string or the output of :func:`parse_gold`."""
    from math_verify import verify

    gold_parsed = parse_gold(gold, timeout) if isinstance(gold, str) else gold
    parsed, text = extract_answer(completion, extraction, timeout)
    if not parsed:
        return Verdict(text, False)
    ok = verify(gold_parsed, parsed, timeout_seconds=_timeout(timeout))
    return Verdict(text, bool(ok))


def rescore(samples: list[dict], extraction: str = "last_number", timeout: int | None = 5) -> list[bool]:
    """Re-check stored ``samples.jsonl`` records (``gold`` and ``completion`` fields) under another extraction."""
    golds: dict = {}
    out = []
    for r in samples:
        gold = golds.get(r["gold"])
        if gold is None:
            gold = golds[r["gold"]] = parse_gold(r["gold"], timeout)
        out.append(check_answer(gold, r["completion"], extraction=extraction, timeout=timeout).correct)
    return out
