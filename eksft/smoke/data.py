"""The smoke run's data: the configured file when it exists (its first records), else a generated stand-in with the
configured columns, written under the smoke folder and named in the checklist. Records are small arithmetic problems
with a ``\\boxed{}`` answer, so every consumer (SFT formats, RL gold answers, evaluation) can read them."""

from __future__ import annotations

import json
import os
import random

from eksft.models.loading import looks_like_path

INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


def available(source: str | None) -> bool:
    """A local file or folder, or a built-in ``synthetic:`` set: the smoke run reads it. A hub dataset name is not
    (nothing is downloaded), nor is a missing path."""
    if not source:
        return False
    from eksft.rl.config import SYNTHETIC_PREFIX

    return source.startswith(SYNTHETIC_PREFIX) or os.path.exists(os.path.expanduser(source))


def _problems(n: int, seed: int = 0) -> list[tuple[str, str, str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        out.append((f"What is {a} + {b}?", f"{a} + {b} = {a + b}, so the answer is \\boxed{{{a + b}}}.", str(a + b)))
    return out


def standin_records(n: int, cfg_values: dict) -> list[dict]:
    """``n`` records in the format and columns a training config names (``data_format``, ``*_column``,
    ``answer_column``, ``system_column``); prompt_completion (with the answer column) under ``auto``."""
    fmt = cfg_values.get("data_format", "auto")
    prompt_col = cfg_values.get("prompt_column", "prompt")
    completion_col = cfg_values.get("completion_column", "completion")
    answer_col = cfg_values.get("answer_column", "answer")
    system_col = cfg_values.get("system_column")
    records = []
    for question, solution, answer in _problems(n):
        prompt = f"{question}\n\n{INSTRUCTION}"
        if fmt == "messages":
            rec = {
                cfg_values.get("messages_column", "messages"): [
                    {"role": "user", "content": prompt},
                    {"role": "assistant", "content": solution},
                ]
            }
        elif fmt == "sharegpt":
            rec = {
                cfg_values.get("conversations_column", "conversations"): [
                    {"from": "human", "value": prompt},
                    {"from": "gpt", "value": solution},
                ]
            }
        else:
            rec = {prompt_col: prompt, completion_col: solution}
        rec[answer_col] = answer
        if system_col:
            rec[system_col] = "You are a careful mathematician."
        records.append(rec)
    return records


def write_jsonl(path: str, records: list[dict]) -> str:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec) + "\n")
    return path


def standin_file(source: str, folder: str, n: int, cfg_values: dict) -> str:
    """Write the stand-in for the missing ``source`` into ``folder``; return its path."""
    base = os.path.basename(str(source).rstrip("/")) or "data"
    stem = base.rsplit(".", 1)[0] if "." in base else base
    return write_jsonl(os.path.join(folder, f"{stem}.standin.jsonl"), standin_records(n, cfg_values))


def benchmark_standin(spec: str, folder: str, n: int) -> tuple[str, str | None]:
    """``(spec to evaluate, note)``: a benchmark whose file exists (or a built-in set) is kept; a missing file
    becomes a stand-in JSONL with its layout's columns (``aime24:data/aime24.parquet`` -> problem, answer, id)."""
    from eksft.data import synthetic
    from eksft.eval.benchmarks import LAYOUTS

    layout, _, path = spec.partition(":") if ":" in spec else ("", "", spec)
    if spec in synthetic.BENCHMARKS or (path and os.path.exists(path)):
        return spec, None
    if not path and spec in LAYOUTS:  # a layout alone: the hub dataset, not downloaded
        layout, path = spec, f"{spec}.jsonl"
    if not looks_like_path(path) and not path.endswith((".jsonl", ".json", ".parquet")):
        return spec, None  # not a file: leave it to the benchmark loader's own error
    cols = LAYOUTS.get(layout, {"problem": "problem", "answer": "answer", "id": "id"})
    rows = [
        {cols["problem"]: f"{q}\n\n{INSTRUCTION}", cols["answer"]: a, cols["id"]: i}
        for i, (q, _, a) in enumerate(_problems(n, seed=1))
    ]
    stem = os.path.basename(path).rsplit(".", 1)[0]
    out = write_jsonl(os.path.join(folder, "benchmarks", f"{stem}.jsonl"), rows)
    return (f"{layout}:{out}" if layout else out), f"{spec}: file missing, stand-in {out}"
