"""Training data formats: local JSON / JSONL / Parquet files, local dataset folders or hub dataset names, turned into
the records TRL's ``SFTTrainer`` tokenises.

Sources (:func:`read_source`): a path ending in .json/.jsonl/.parquet or any existing file is read here; an existing
folder is a dataset: a ``save_to_disk`` output (``datasets.load_from_disk``) or a hub dataset repo's layout (e.g.
``data/train-00000-of-00001.parquet``; ``datasets.load_dataset(folder)``), so a downloaded or cloned hub dataset
works offline where its name goes; anything else is a hub dataset name (needs the network or the datasets cache).

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
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
    "model": "assistant",
}


@dataclass
class Columns:
    """Column mapping (config fields ``*_column``) and an optional default system prompt."""

    prompt: str = "prompt"
    completion: str = "completion"
    messages: str = "messages"
    conversations: str = "conversations"
    system: str | None = None
    system_prompt: str | None = None

    @classmethod
    def of(cls, cfg) -> Columns:
        """The mapping set by a config's ``*_column`` / ``system_prompt`` fields (EKSFTConfig and RLConfig)."""
        return cls(
            prompt=cfg.prompt_column,
            completion=cfg.completion_column,
            messages=cfg.messages_column,
            conversations=cfg.conversations_column,
            system=cfg.system_column,
            system_prompt=cfg.system_prompt,
        )


class RecordError(ValueError):
    pass


#: config field holding a data source -> the field naming its split (errors say which one to change)
SPLIT_FIELDS = {"train_file": "train_split", "eval_file": "eval_split"}


def read_local(path: str, field: str = "train_file") -> tuple[list[dict], list[str]]:
    """Records of a local .json / .jsonl / .parquet file and, for each, where it came from (``file:line`` or
    ``file:row``). Another extension (a .csv, a .txt) is refused naming the ones read, not guessed at."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{field}: data file {path!r} does not exist.")
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in LOCAL_SUFFIXES:
        raise RecordError(
            f"{field}={path!r}: {'a ' + suffix if suffix else 'a file without an extension'} is not a data format "
            f"eksft reads; give a {', '.join(LOCAL_SUFFIXES)} file (JSON Lines: one JSON object a line), e.g. "
            "convert a CSV with datasets.Dataset.from_csv(path).to_json('data.jsonl')."
        )
    if path.endswith(".parquet"):
        rows = Dataset.from_parquet(path).to_list()
        return rows, [f"{path} row {i + 1}" for i in range(len(rows))]
    from eksft.text_files import jsonl_objects, read_utf8

    try:
        text = read_utf8(path, f" ({field})")
    except ValueError as e:
        raise RecordError(str(e)) from None
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
    for lineno, row in jsonl_objects(text, path, RecordError):  # JSON Lines (also .json holding one object a line)
        rows.append(row)
        where.append(f"{path} line {lineno}")
    return rows, where


def read_source(
    source: str,
    split: str = "train",
    field: str = "train_file",
    split_field: str | None = None,
) -> tuple[list[dict], list[str]]:
    """Records of ``source``, the value of config field ``field``, and where each came from. ``source`` is a file, a
    dataset folder or a hub dataset name (module docstring); ``split`` (config field ``split_field``, by default
    the one of ``field`` in ``SPLIT_FIELDS``) picks the split of the last two. Errors name the fields."""
    if os.path.isfile(source) or (source.endswith(LOCAL_SUFFIXES) and not os.path.isdir(source)):
        return read_local(source, field)
    where = (field, split_field or SPLIT_FIELDS.get(field, "the split"))
    rows = (_read_folder if os.path.isdir(source) else _read_hub)(source, split, where).to_list()
    return rows, [f"{source}[{split}] row {i + 1}" for i in range(len(rows))]


def _unknown_split(source: str, where: tuple[str, str], error: Exception | str) -> ValueError:
    return ValueError(f"{where[0]}={source!r}: {error} Set {where[1]} to one of them.")


def _read_folder(path: str, split: str, where: tuple[str, str]):
    from datasets import DatasetDict, load_dataset, load_from_disk

    if any(os.path.exists(os.path.join(path, f)) for f in ("dataset_dict.json", "state.json")):  # save_to_disk
        ds = load_from_disk(path)
        if isinstance(ds, DatasetDict):
            if split not in ds:
                raise _unknown_split(path, where, f"Unknown split {split!r}. Should be one of {sorted(ds)}.")
            ds = ds[split]
        return ds
    try:  # a hub dataset repo's layout: datasets finds the data files and their splits by name
        return load_dataset(path, split=split)
    except ValueError as e:
        if "Unknown split" in str(e):
            raise _unknown_split(path, where, e) from None
        raise
    except FileNotFoundError as e:  # datasets' EmptyDatasetError: no data file in it
        raise FileNotFoundError(
            f"{where[0]}={path!r} is a folder without data files ({e}); give a {', '.join(LOCAL_SUFFIXES)} file or a "
            "dataset folder (a hub dataset repo's layout such as data/train-00000-of-00001.parquet, or a "
            "save_to_disk output)."
        ) from None


def _read_hub(name: str, split: str, where: tuple[str, str]):
    from datasets import load_dataset

    try:
        return load_dataset(name, split=split)
    except ValueError as e:
        if "Unknown split" in str(e):
            raise _unknown_split(name, where, e) from None
        raise
    except OSError as e:  # not found, no network, offline mode (ConnectionError, FileNotFoundError, HTTP errors)
        raise FileNotFoundError(
            f"{where[0]}={name!r} is neither a local file or folder nor a dataset the hub could load "
            f"({type(e).__name__}: {e}). Give a .json/.jsonl/.parquet file, a dataset folder (a hub dataset repo's "
            "layout such as data/train-00000-of-00001.parquet, or a save_to_disk output) or a hub name; offline "
            "(no network, HF_DATASETS_OFFLINE=1) a hub name loads only from the datasets cache, so download the "
            "dataset once or point the field at a local copy."
        ) from None


def detect_format(row: dict, cols: Columns, *, require_completion: bool = True, where: str | None = None) -> str:
    """The record format from a record's columns. ``require_completion=False`` (RL prompts): a prompt column alone
    is prompt_completion. ``where`` names the record in the error."""
    if cols.conversations in row:
        return "sharegpt"
    if cols.messages in row:
        return "messages"
    if cols.prompt in row and (cols.completion in row or not require_completion):
        return "prompt_completion"
    need = f"{cols.prompt!r}+{cols.completion!r}" if require_completion else repr(cols.prompt)
    raise RecordError(
        f"{where + ': ' if where else ''}cannot tell the data format from columns {sorted(row)}: expected {need}, "
        f"{cols.messages!r} or {cols.conversations!r}. Set data_format and the *_column fields."
    )


def _text(value, where: str, name: str) -> str:
    if not isinstance(value, str):
        raise RecordError(f"{where}: field {name!r} must be a string, got {type(value).__name__}.")
    return value


#: The turn layout of each conversational format: (role key, content key, role names -> role).
MESSAGE_ROLES = {r: r for r in ("system", "user", "assistant", "tool")}
TURNS = {"messages": ("role", "content", MESSAGE_ROLES), "sharegpt": ("from", "value", SHAREGPT_ROLES)}


def turns(value, where: str, name: str, fmt: str = "messages") -> list[dict]:
    """``[{role, content}, ...]`` from a ``messages`` or ``sharegpt`` list, each turn checked."""
    role_key, content_key, roles = TURNS[fmt]
    if not isinstance(value, list) or not value:
        raise RecordError(
            f"{where}: field {name!r} must be a non-empty list of {{{role_key}, {content_key}}} "
            f"{'messages' if fmt == 'messages' else 'turns'}."
        )
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or role_key not in m or content_key not in m:
            raise RecordError(f"{where}: field {name!r}[{i}] must be an object with {role_key!r} and {content_key!r}.")
        role = roles.get(m[role_key]) if isinstance(m[role_key], str) else None
        if role is None:
            raise RecordError(f"{where}: field {name!r}[{i}].{role_key} {m[role_key]!r} is not one of {sorted(roles)}.")
        out.append({"role": role, "content": _text(m[content_key], where, f"{name}[{i}].{content_key}")})
    return out


def conversation(row: dict, fmt: str, cols: Columns, where: str) -> tuple[str, list[dict]]:
    """(column, turns) of a ``messages`` / ``sharegpt`` record: its ``messages_column`` / ``conversations_column``
    as ``{role, content}`` turns (:func:`turns`); a missing column is a RecordError naming the field."""
    name = cols.messages if fmt == "messages" else cols.conversations
    if name not in row:
        raise RecordError(
            f"{where}: missing field {name!r} ({'messages' if fmt == 'messages' else 'conversations'}_column)."
        )
    return name, turns(row[name], where, name, fmt)


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
        for name, value in ((cols.prompt, prompt), (cols.completion, completion)):
            if not isinstance(value, (str, list)):  # a number or null: the format expects a string
                raise RecordError(
                    f"{where}: field {name!r} must be a string (prompt_completion format), got "
                    f"{'null' if value is None else type(value).__name__}; or a list of "
                    "{role, content} messages."
                )
        if isinstance(prompt, str) and isinstance(completion, str):
            if system is None:
                return {"prompt": prompt, "completion": completion}
            messages = [
                {"role": "system", "content": system},
                {"role": "user", "content": prompt},
                {"role": "assistant", "content": completion},
            ]
        else:
            p = (
                [{"role": "user", "content": _text(prompt, where, cols.prompt)}]
                if isinstance(prompt, str)
                else turns(prompt, where, cols.prompt)
            )
            c = turns(completion, where, cols.completion)
            messages = ([{"role": "system", "content": system}] if system and p[0]["role"] != "system" else []) + p + c
    elif fmt in ("messages", "sharegpt"):
        _, messages = conversation(row, fmt, cols, where)
        system = _system(row, cols, where)
        if system and messages[0]["role"] != "system":
            messages = [{"role": "system", "content": system}, *messages]
    else:
        raise ValueError(f"data_format {fmt!r}; choose prompt_completion, messages, sharegpt or auto.")
    if messages[-1]["role"] != "assistant":
        raise RecordError(
            f"{where}: the conversation must end with an assistant turn (the response to train on); "
            f"it ends with {messages[-1]['role']!r}."
        )
    if keep_messages:
        return {"messages": messages}
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def blank(value) -> bool:
    """Text that is empty or only whitespace; for a list of turns, every non-system turn's content (a list with
    no such turn is blank)."""
    if isinstance(value, list):
        return all(blank(m.get("content")) for m in value if isinstance(m, dict) and m.get("role") != "system")
    return isinstance(value, str) and not value.strip()


def _part(record: dict, part: str):
    """The ``prompt`` or ``completion`` of a normalised record (of ``messages``: the turns before / the last one)."""
    if part in record:
        return record[part]
    return record["messages"][-1:] if part == "completion" else record["messages"][:-1]


def check_not_blank(records: list[dict], where: list[str], fmt: str, cols: Columns) -> None:
    """Every normalised record has a prompt and a completion with text in them: an empty or whitespace-only one
    teaches nothing (a blank completion: only an end of turn) and an all-blank file ended deep inside TRL. One
    RecordError naming the first such record, the field, and how many there are."""
    for part in ("completion", "prompt"):
        bad = [i for i, r in enumerate(records) if blank(_part(r, part))]
        if not bad:
            continue
        name = {"prompt_completion": getattr(cols, part), "messages": cols.messages}.get(fmt, cols.conversations)
        if isinstance(_part(records[bad[0]], part), list):
            name += "' (its last assistant turn)" if part == "completion" else "' (its turns before the answer)"
        else:
            name += "'"
        count = "all" if len(bad) == len(records) else f"{len(bad)} of"
        raise RecordError(
            f"{where[bad[0]]}: field '{name} is empty or only whitespace ({count} {len(records)} records are, this "
            f"is the first); every record needs a {part} to train on: fill it in or remove the record."
        )


def load_records(
    source: str,
    *,
    fmt: str = "auto",
    columns: Columns | None = None,
    split: str = "train",
    max_samples: int | None = None,
    keep_messages: bool = False,
    field: str = "train_file",
    split_field: str | None = None,
) -> Dataset:
    """Read ``source`` (config fields ``field`` / ``split_field``, see :func:`read_source`) and return a
    ``datasets.Dataset`` in a format ``SFTTrainer`` accepts."""
    cols = columns or Columns()
    rows, where = read_source(source, split, field, split_field)
    if max_samples is not None:
        rows, where = rows[:max_samples], where[:max_samples]
    if not rows:
        raise RecordError(f"{source}: no records found.")
    resolved = detect_format(rows[0], cols) if fmt == "auto" else fmt
    out = [normalise(r, resolved, cols, w, keep_messages) for r, w in zip(rows, where, strict=True)]
    check_not_blank(out, where, resolved, cols)
    kinds = {("conv" if isinstance(r.get("prompt", r.get("messages")), list) else "text") for r in out}
    if len(kinds) > 1:  # Arrow needs one schema; mixing plain and chat records is also a data bug
        raise RecordError(f"{source}: mixes plain-text and conversational records; use one kind per file.")
    return Dataset.from_list(out)
