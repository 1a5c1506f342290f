"""Prompts and gold answers for the DAPO stage, from the same sources as training (docs/rl.md, "Data").

RL needs only a prompt and a gold answer per record. Sources: a local JSON / JSONL / Parquet file or hub dataset read
by :func:`eksft.data.formats.read_source` (so SFT files work unchanged), or ``synthetic:NAME`` (the built-in sets of
:mod:`eksft.data.synthetic`). The gold answer is the ``answer_column``; records without one fall back to the last
``\\boxed{}`` of their worked solution. Every gold answer is parsed with math-verify here, so a bad record fails
before any rollout, naming the file and line.

The paper's split (3k records for SFT, the disjoint 43k for RL) is ``skip_samples`` / ``max_samples``
(:func:`split_slice`); the pipeline gives SFT ``max_samples = sft_samples`` and RL ``skip_samples = sft_samples``.
"""

from __future__ import annotations

import json
import os

from datasets import Dataset

from eksft.data import synthetic
from eksft.data.formats import (
    Columns,
    RecordError,
    _system,
    _text,
    blank,
    conversation,
    detect_format,
    read_source,
    turns,
)
from eksft.eval.verify import last_boxed, parse_gold

from .config import SYNTHETIC_PREFIX, RLConfig


def split_slice(skip: int, size: int | None) -> slice:
    """Records ``[skip, skip + size)``: SFT takes ``split_slice(0, n_sft)``, RL ``split_slice(n_sft, n_rl)``."""
    return slice(skip, None if size is None else skip + size)


def synthetic_rows(name: str, part: slice) -> tuple[list[dict], list[str]]:
    """Records ``part`` of the built-in training stream ``name`` (prompt, completion, problem, answer, source)."""
    if part.stop is None:
        raise ValueError(f"train_file {SYNTHETIC_PREFIX}{name}: built-in sets are unbounded; set max_samples.")
    rows = synthetic.training_records(name, part.stop)[part]
    return rows, [f"{SYNTHETIC_PREFIX}{name} record {part.start + i + 1}" for i in range(len(rows))]


def write_synthetic_jsonl(name: str, size: int, path: str, *, chat: bool = True) -> str:
    """The first ``size`` records of ``name`` as a JSONL file ``eksft train`` and ``eksft rl`` both read.

    ``chat=True`` writes conversational prompt/completion (one user and one assistant message), so SFT trains in
    the chat template that ``eksft eval`` and the RL stage prompt with.
    """
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for rec in synthetic.training_records(name, size):
            if chat:
                rec = {
                    **rec,
                    "prompt": [{"role": "user", "content": rec["prompt"]}],
                    "completion": [{"role": "assistant", "content": rec["completion"]}],
                }
            f.write(json.dumps(rec) + "\n")
    return path


def to_prompt(row: dict, cfg: RLConfig, cols: Columns, where: str) -> dict:
    """One raw record -> ``{"prompt": str | messages, "answer": gold string}``."""
    fmt = (
        cfg.data_format
        if cfg.data_format != "auto"
        else detect_format(row, cols, require_completion=False, where=where)
    )
    completion = None
    if fmt in ("messages", "sharegpt"):
        name, messages = conversation(row, fmt, cols, where)
        if messages[-1]["role"] == "assistant":  # a training conversation: its last answer is the worked solution
            completion, messages = messages[-1]["content"], messages[:-1]
        if not messages:
            raise RecordError(f"{where}: field {name!r} has no prompt turn before the assistant answer.")
        prompt = messages
    else:
        if cols.prompt not in row:
            raise RecordError(f"{where}: missing field {cols.prompt!r} (prompt_column).")
        value = row[cols.prompt]
        prompt = _text(value, where, cols.prompt) if isinstance(value, str) else turns(value, where, cols.prompt)
        c = row.get(cols.completion)
        completion = c if isinstance(c, str) or c is None else completion_of(c)
    if blank(prompt):  # before the instruction is appended to it
        field = cols.prompt if fmt == "prompt_completion" else name
        raise RecordError(
            f"{where}: field {field!r} holds an empty or whitespace-only prompt (the first such record); every "
            "record needs a prompt: fill it in or remove the record."
        )
    if isinstance(prompt, str):
        if cfg.instruction:
            prompt = f"{prompt}\n\n{cfg.instruction}"
        if cfg.chat_template:
            prompt = [{"role": "user", "content": prompt}]
    system = _system(row, cols, where)
    if system and isinstance(prompt, list) and prompt[0]["role"] != "system":
        prompt = [{"role": "system", "content": system}, *prompt]
    elif system and isinstance(prompt, str):
        raise RecordError(f"{where}: a system prompt needs chat_template: true (text prompts have no system turn).")
    return {"prompt": prompt, "answer": gold_answer(row, cfg, completion, where)}


def completion_of(messages) -> str | None:
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
        return messages[-1].get("content")
    return None


def gold_answer(row: dict, cfg: RLConfig, completion: str | None, where: str) -> str:
    gold = row.get(cfg.answer_column)
    if gold is None or str(gold).strip() == "":
        gold = last_boxed(completion) if completion else None
        if gold is None or not gold.strip():
            raise RecordError(
                f"{where}: no gold answer: field {cfg.answer_column!r} is missing or empty and there is "
                f"no \\boxed{{}} in {cfg.completion_column!r}. Set answer_column."
            )
    gold = str(gold).strip()
    try:
        parse_gold(gold, cfg.verify_timeout)
    except ValueError as err:
        raise RecordError(f"{where}: {err}; fix the answer (LaTeX is fine) or drop the record.") from err
    return gold


def load_prompts(cfg: RLConfig) -> Dataset:
    """The RL prompt set of ``cfg``: records ``[skip_samples, skip_samples + max_samples)``, columns prompt, answer."""
    if not cfg.train_file:
        raise ValueError(
            "RLConfig.train_file is not set: give a .json/.jsonl/.parquet file, a hub dataset name or "
            f"'{SYNTHETIC_PREFIX}NAME' ({', '.join(synthetic.BENCHMARKS)})."
        )
    part = split_slice(cfg.skip_samples, cfg.max_samples)
    if cfg.train_file.startswith(SYNTHETIC_PREFIX):
        rows, where = synthetic_rows(cfg.train_file[len(SYNTHETIC_PREFIX) :], part)
    else:
        rows, where = read_source(cfg.train_file, cfg.train_split)
        total = len(rows)
        rows, where = rows[part], where[part]
        if not rows:
            raise RecordError(
                f"{cfg.train_file}: no records left after skip_samples={cfg.skip_samples} "
                f"({total} in the file); lower skip_samples."
            )
    cols = Columns.of(cfg)
    out = [to_prompt(r, cfg, cols, w) for r, w in zip(rows, where, strict=True)]
    if len({isinstance(r["prompt"], list) for r in out}) > 1:  # Arrow needs one schema
        raise RecordError(f"{cfg.train_file}: mixes text and conversational prompts; set chat_template: true.")
    return Dataset.from_list(out)
