"""Reading the text files people hand eksft (data, configs, result files): UTF-8 text and JSON Lines, where a bad
byte or line is one ValueError naming the file, the line and the fix. No heavy import at module level."""

from __future__ import annotations


def not_utf8(path: str, raw: bytes, e: UnicodeDecodeError) -> str:
    """``FILE line L (byte B): not valid UTF-8 (0x..)`` for a decode error of the bytes ``raw`` of ``path``."""
    line = raw.count(b"\n", 0, e.start) + 1
    return f"{path} line {line} (byte offset {e.start}): not valid UTF-8 (byte 0x{raw[e.start]:02x})"


def read_utf8(path: str, where: str = "") -> str:
    """The text of ``path``; bytes that are not UTF-8 raise one ValueError naming the line and byte offset
    (``where`` is appended to the fix, e.g. the field the file came from)."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{not_utf8(path, raw, e)}; save the file as UTF-8{where}.") from None


def jsonl_objects(text: str, where: str, error: type[Exception] = ValueError, on_torn_last=None):
    """``(line number, object)`` for each non-blank line of JSON Lines ``text``; a line that is not a JSON object
    raises ``error`` naming ``where`` and the line. ``on_torn_last(line number)``: a last line that is not valid
    JSON (cut short by a crash while it was appended) is skipped and reported to it instead."""
    import json

    lines = text.splitlines()
    last = max((i for i, line in enumerate(lines, 1) if line.strip()), default=0)
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            if on_torn_last is not None and lineno == last:
                on_torn_last(lineno)
                continue
            raise error(f"{where} line {lineno}: invalid JSON ({e.msg}); fix or delete the line.") from None
        if not isinstance(obj, dict):
            raise error(f"{where} line {lineno}: expected a JSON object, got {type(obj).__name__}.")
        yield lineno, obj
