"""Evaluation benchmarks: built-in synthetic sets, local JSONL / JSON / Parquet files, and hub datasets.

A ``--benchmark`` value is one of:

- a built-in name (``eksft.data.synthetic.BENCHMARKS``), generated offline with a fixed seed;
- a file path, optionally prefixed with a layout: ``aime24:data/aime24.parquet``;
- a layout name alone (``aime24``): its public hub dataset, loaded with ``datasets`` (needs the hub).

Columns come from ``--problem-column`` / ``--answer-column`` / ``--id-column`` when given, else from the layout,
else from the first of :data:`AUTO_COLUMNS` the file has. Every gold answer is parsed with math-verify at load time,
so a bad record fails before any sampling, with its file and line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from eksft.data import synthetic

from .verify import parse_gold

#: Ready-made layouts: the column names of the public datasets (docs/evaluation.md lists them).
LAYOUTS = {
    "aime24": {
        "hub": "HuggingFaceH4/aime_2024",
        "split": "train",
        "problem": "problem",
        "answer": "answer",
        "id": "id",
    },
    "aime25": {"hub": "math-ai/aime25", "split": "test", "problem": "problem", "answer": "answer", "id": "id"},
    "amc": {"hub": "AI-MO/aimo-validation-amc", "split": "train", "problem": "problem", "answer": "answer", "id": "id"},
    "hmmt25": {
        "hub": "MathArena/hmmt_feb_2025",
        "split": "train",
        "problem": "problem",
        "answer": "answer",
        "id": "problem_idx",
    },
    "math500": {
        "hub": "HuggingFaceH4/MATH-500",
        "split": "test",
        "problem": "problem",
        "answer": "answer",
        "id": "unique_id",
    },
}

#: Tried in order when neither a flag nor a layout names the column (covers the layouts above and common variants,
#: e.g. Maxwell-Jia/AIME_2024's capitalised ``Problem`` / ``Answer`` / ``ID``, opencompass/AIME2025's ``question``).
AUTO_COLUMNS = {
    "problem": ("problem", "question", "Problem", "Question", "prompt"),
    "answer": ("answer", "Answer", "gold", "final_answer", "expected_answer"),
    "id": ("id", "ID", "unique_id", "problem_idx", "idx"),
}


@dataclass
class Benchmark:
    name: str
    problems: list[dict] = field(default_factory=list)  # each: id, problem, answer (gold string)


def _read_rows(path: Path) -> list[tuple[str, dict]]:
    """``(where, record)`` pairs; ``where`` names the record for error messages (``file line N`` / ``file row N``)."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        from eksft.text_files import jsonl_objects

        return [(f"{path} line {i}", rec) for i, rec in jsonl_objects(path.read_text(), str(path))]
    if suffix == ".json":
        data = json.loads(path.read_text())
        if isinstance(data, dict):  # {"data": [...]} or column-oriented {"problem": [...], "answer": [...]}
            lists = [v for v in data.values() if isinstance(v, list)]
            if len(data) == 1 and lists:
                data = lists[0]
            elif lists and len(lists) == len(data):
                data = [dict(zip(data, vals)) for vals in zip(*data.values())]
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a list of records (or a dict of columns), got {type(data).__name__}")
        return [(f"{path} record {i}", r) for i, r in enumerate(data)]
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return [(f"{path} row {i}", r) for i, r in enumerate(pq.read_table(path).to_pylist())]
    raise ValueError(f"{path}: unsupported file type {suffix!r}; use .jsonl, .json or .parquet")


def _hub_rows(layout: str) -> list[tuple[str, dict]]:
    spec = LAYOUTS[layout]
    try:
        import datasets

        data = datasets.load_dataset(spec["hub"], split=spec["split"])
    except Exception as err:  # offline machines land here: say how to use a local copy instead
        raise RuntimeError(
            f"could not load {spec['hub']} from the hub ({type(err).__name__}: {err}); download it "
            f"and pass --benchmark {layout}:PATH_TO_FILE"
        ) from err
    return [(f"{spec['hub']} row {i}", r) for i, r in enumerate(data)]


def _pick(kind: str, columns, flag: str | None, layout: str | None, where: str) -> str | None:
    if flag:
        if flag not in columns:
            raise ValueError(f"{where}: no column {flag!r} (columns: {sorted(columns)}); fix --{kind}-column")
        return flag
    if layout:
        name = LAYOUTS[layout][kind]
        if name not in columns:
            raise ValueError(
                f"{where}: layout {layout!r} expects column {name!r} for the {kind}, the record has "
                f"{sorted(columns)}; pass --{kind}-column"
            )
        return name
    for name in AUTO_COLUMNS[kind]:
        if name in columns:
            return name
    raise ValueError(
        f"{where}: no {kind} column (looked for {list(AUTO_COLUMNS[kind])}, the record has "
        f"{sorted(columns)}); pass --{kind}-column NAME"
    )


def _id_column(record: dict, layout: str | None) -> str | None:
    """Ids are optional (records without one get their index), so a missing id column is never an error."""
    candidates = ((LAYOUTS[layout]["id"],) if layout else ()) + AUTO_COLUMNS["id"]
    return next((c for c in candidates if c in record), None)


def benchmark_name(spec: str) -> str:
    """The name results are keyed by: built-ins and hub layouts keep theirs, files (also ``LAYOUT:FILE``) their stem."""
    if spec in synthetic.BENCHMARKS or spec in LAYOUTS:
        return spec
    head, sep, tail = spec.partition(":")
    return Path(tail if sep and head in LAYOUTS else spec).stem


def load_benchmark(
    spec: str,
    *,
    problem_column: str | None = None,
    answer_column: str | None = None,
    id_column: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> Benchmark:
    """Load one benchmark (see the module docstring for ``spec``); ``offset`` skips the first problems, then
    ``limit`` keeps the next ones (a row-index id keeps its position in the whole file)."""
    if spec in synthetic.BENCHMARKS:
        return Benchmark(spec, synthetic.evaluation_problems(spec, limit, offset))
    layout, path = None, spec
    head, sep, tail = spec.partition(":")
    if sep and head in LAYOUTS:
        layout, path = head, tail
    if spec in LAYOUTS:
        layout, name, rows = spec, spec, _hub_rows(spec)
    else:
        file = Path(path)
        if not file.is_file():
            raise ValueError(
                f"benchmark {spec!r} is neither a built-in ({sorted(synthetic.BENCHMARKS)}), a layout "
                f"({sorted(LAYOUTS)}) nor an existing file"
            )
        name, rows = benchmark_name(spec), _read_rows(file)
    if offset:
        if offset >= len(rows):
            raise ValueError(f"offset {offset}: benchmark {spec!r} has {len(rows)} records")
    rows = rows[offset : None if limit is None else offset + limit]
    if not rows:
        raise ValueError(f"benchmark {spec!r} has no records")
    problems, seen = [], set()
    for index, (where, record) in enumerate(rows, start=offset):
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected an object with problem and answer fields, got {type(record).__name__}")
        p = _pick("problem", record, problem_column, layout, where)
        a = _pick("answer", record, answer_column, layout, where)
        i = _pick("id", record, id_column, None, where) if id_column else _id_column(record, layout)
        gold = record[a]
        if gold is None or str(gold).strip() == "":
            raise ValueError(f"{where}: empty gold answer in column {a!r}; fix or remove the record")
        try:
            parse_gold(str(gold))
        except ValueError as err:
            raise ValueError(f"{where}: {err}; fix the answer (LaTeX is fine) or remove the record") from err
        pid = str(record[i]) if i else str(index)
        if pid in seen:
            raise ValueError(f"{where}: duplicate id {pid!r} in column {i!r}; ids must be unique to resume runs")
        seen.add(pid)
        problems.append({"id": pid, "problem": str(record[p]), "answer": str(gold).strip()})
    return Benchmark(name, problems)
