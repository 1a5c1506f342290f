"""Training data formats: local JSON / JSONL / Parquet files or hub dataset names, turned into the records TRL's
``SFTTrainer`` tokenises.

Accepted record formats (``data_format``, or ``auto`` from the first record's columns):

- ``prompt_completion``: ``{"prompt": str | messages, "completion": str | messages}``. Plain strings stay plain
  (no chat template, as in TRL); with a system prompt they become a conversation.
- ``messages``: ``{"messages": [{"role", "content"}, ...]}`` ending with an assistant turn.
- ``sharegpt``: ``{"conversations": [{"from", "value"}, ...]}`` with ``from`` in human/user, gpt/assistant, system.

Conversations become TRL's conversational prompt-completion: everything before the last assistant turn is the prompt,
the last assistant turn the completion, so the loss covers exactly that turn with any chat template. With
``keep_messages=True`` (``assistant_only_loss``) they stay ``messages`` and TRL's assistant masks pick every
assistant turn. A malformed record raises ``ValueError`` naming the file, the line (or row) and the field.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from datasets import Dataset

LOCAL_SUFFIXES = (".json", ".jsonl", ".parquet")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system",
                  "model": "assistant"}  # fmt: skip


@dataclass
class Columns:
    """Column mapping (config fields ``*_column``) and an optional default system prompt."""

    prompt: str = "prompt"
    completion: str = "completion"
    messages: str = "messages"
    conversations: str = "conversations"
    system: str | None = None
    system_prompt: str | None = None


class RecordError(ValueError):
    pass


def read_local(path: str) -> tuple[list[dict], list[str]]:
    """Records of a local file and, for each, where it came from (``file:line`` or ``file:row``)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"data file {path!r} does not exist (train_file / eval_file).")
    if path.endswith(".parquet"):
        rows = Dataset.from_parquet(path).to_list()
        return rows, [f"{path} row {i + 1}" for i in range(len(rows))]
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith(".json") and text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise RecordError(f"{path} line {e.lineno}: invalid JSON ({e.msg}).") from None
        bad = [i for i, r in enumerate(rows) if not isinstance(r, dict)]
        if bad:
            raise RecordError(f"{path} record {bad[0] + 1}: expected a JSON object, got {type(rows[bad[0]]).__name__}.")
        return rows, [f"{path} record {i + 1}" for i in range(len(rows))]
    rows, where = [], []
    for lineno, line in enumerate(text.splitlines(), 1):  # JSON Lines (also .json files holding one object a line)
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise RecordError(f"{path} line {lineno}: invalid JSON ({e.msg}).") from None
        if not isinstance(row, dict):
            raise RecordError(f"{path} line {lineno}: expected a JSON object, got {type(row).__name__}.")
        rows.append(row)
        where.append(f"{path} line {lineno}")
    return rows, where


def read_source(source: str, split: str = "train") -> tuple[list[dict], list[str]]:
    if source.endswith(LOCAL_SUFFIXES) or os.path.exists(source):
        return read_local(source)
    from datasets import load_dataset  # a hub dataset name; needs the network unless cached

    rows = load_dataset(source, split=split).to_list()
    return rows, [f"{source}[{split}] row {i + 1}" for i in range(len(rows))]


def detect_format(row: dict, cols: Columns) -> str:
    if cols.conversations in row:
        return "sharegpt"
    if cols.messages in row:
        return "messages"
    if cols.prompt in row and cols.completion in row:
        return "prompt_completion"
    raise RecordError(
        f"cannot tell the data format from columns {sorted(row)}: expected {cols.prompt!r}+{cols.completion!r}, "
        f"{cols.messages!r} or {cols.conversations!r}. Set data_format and the *_column fields."
    )


def _text(value, where: str, name: str) -> str:
    if not isinstance(value, str):
        raise RecordError(f"{where}: field {name!r} must be a string, got {type(value).__name__}.")
    return value


def _messages(value, where: str, name: str) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise RecordError(f"{where}: field {name!r} must be a non-empty list of {{role, content}} messages.")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise RecordError(f"{where}: field {name!r}[{i}] must be an object with 'role' and 'content'.")
        if m["role"] not in ("system", "user", "assistant", "tool"):
            raise RecordError(f"{where}: field {name!r}[{i}].role {m['role']!r} is not system/user/assistant/tool.")
        out.append({"role": m["role"], "content": _text(m["content"], where, f"{name}[{i}].content")})
    return out


def _sharegpt(value, where: str, name: str) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise RecordError(f"{where}: field {name!r} must be a non-empty list of {{from, value}} turns.")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or "from" not in m or "value" not in m:
            raise RecordError(f"{where}: field {name!r}[{i}] must be an object with 'from' and 'value'.")
        role = SHAREGPT_ROLES.get(m["from"])
        if role is None:
            raise RecordError(f"{where}: field {name!r}[{i}].from {m['from']!r} is not one of {sorted(SHAREGPT_ROLES)}.")
        out.append({"role": role, "content": _text(m["value"], where, f"{name}[{i}].value")})
    return out


def _system(row: dict, cols: Columns, where: str) -> str | None:
    if cols.system and row.get(cols.system) is not None:
        return _text(row[cols.system], where, cols.system)
    return cols.system_prompt


def normalise(row: dict, fmt: str, cols: Columns, where: str, keep_messages: bool = False) -> dict:
    """One raw record -> TRL's ``{prompt, completion}`` (text or conversational) or ``{messages}``."""
    if fmt == "prompt_completion":
        for name in (cols.prompt, cols.completion):
            if name not in row:
                raise RecordError(f"{where}: missing field {name!r} (prompt_column / completion_column).")
        prompt, completion = row[cols.prompt], row[cols.completion]
        system = _system(row, cols, where)
        if isinstance(prompt, str) and isinstance(completion, str):
            if not completion:
                raise RecordError(f"{where}: field {cols.completion!r} is empty.")
            if system is None:
                return {"prompt": prompt, "completion": completion}
            messages = [{"role": "system", "content": system}, {"role": "user", "content": prompt},
                        {"role": "assistant", "content": completion}]  # fmt: skip
        else:
            p = [{"role": "user", "content": _text(prompt, where, cols.prompt)}] if isinstance(prompt, str) else \
                _messages(prompt, where, cols.prompt)  # fmt: skip
            c = _messages(completion, where, cols.completion)
            messages = ([{"role": "system", "content": system}] if system and p[0]["role"] != "system" else []) + p + c
    elif fmt in ("messages", "sharegpt"):
        name = cols.messages if fmt == "messages" else cols.conversations
        if name not in row:
            raise RecordError(f"{where}: missing field {name!r} ({'messages' if fmt == 'messages' else 'conversations'}_column).")
        messages = (_messages if fmt == "messages" else _sharegpt)(row[name], where, name)
        system = _system(row, cols, where)
        if system and messages[0]["role"] != "system":
            messages = [{"role": "system", "content": system}, *messages]
    else:
        raise ValueError(f"data_format {fmt!r}; choose prompt_completion, messages, sharegpt or auto.")
    if messages[-1]["role"] != "assistant":
        raise RecordError(f"{where}: the conversation must end with an assistant turn (the response to train on); "
                          f"it ends with {messages[-1]['role']!r}.")  # fmt: skip
    if keep_messages:
        return {"messages": messages}
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def load_records(
    source: str, *, fmt: str = "auto", columns: Columns | None = None, split: str = "train",
    max_samples: int | None = None, keep_messages: bool = False,
) -> Dataset:  # fmt: skip
    """Read ``source`` and return a ``datasets.Dataset`` in a format ``SFTTrainer`` accepts."""
    cols = columns or Columns()
    rows, where = read_source(source, split)
    if max_samples is not None:
        rows, where = rows[:max_samples], where[:max_samples]
    if not rows:
        raise RecordError(f"{source}: no records found.")
    resolved = detect_format(rows[0], cols) if fmt == "auto" else fmt
    out = [normalise(r, resolved, cols, w, keep_messages) for r, w in zip(rows, where, strict=True)]
    kinds = {("conv" if isinstance(r.get("prompt", r.get("messages")), list) else "text") for r in out}
    if len(kinds) > 1:  # Arrow needs one schema; mixing plain and chat records is also a data bug
        raise RecordError(f"{source}: mixes plain-text and conversational records; use one kind per file.")
    return Dataset.from_list(out)
