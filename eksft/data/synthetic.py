"""Offline, seeded math problems with verifiable answers: built-in evaluation sets and disjoint training records.

Two families, each in a few difficulty levels (:data:`BENCHMARKS`):

- ``gsm_symbolic[-easy|-hard]``: reasoning-gym's GSM8K-style templates. reasoning-gym has one difficulty setting for
  this task, so the levels split problems by the number of computation steps in the worked solution
  (easy: at most 2, hard: at least 4).
- ``arithmetic-{easy,medium,hard}``: our own multi-step integer arithmetic with operator precedence, so every record
  can carry a short worked solution (reasoning-gym's arithmetic tasks have none).

Evaluation sets come from :data:`EVAL_SEED` and training records from :data:`TRAIN_SEED`. reasoning-gym seeds each
item with ``Random(seed + index)``, so the two seeds are far apart (no index range can reach the other seed) and,
on top of that, :func:`training_records` drops any problem whose text appears in any evaluation set
(``tests/data`` proves the two are disjoint).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import cache, lru_cache

#: Appended to every problem, in evaluation prompts and training prompts alike (paper, section 5).
INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."

EVAL_SEED = 20_251_000  # evaluation sets
TRAIN_SEED = 7_000_000_000  # training records: far from EVAL_SEED + any index
EVAL_SIZE = 200  # problems per built-in evaluation set; ``--limit`` takes a prefix


@dataclass(frozen=True)
class Level:
    family: str  # "gsm" or "arithmetic"
    min_steps: int = 0  # gsm: computation steps in the worked solution
    max_steps: int = 99
    terms: int = 3  # arithmetic: number of operands
    max_value: int = 20  # arithmetic: operands drawn from 2..max_value
    ops: str = "+-"  # arithmetic: operators used


BENCHMARKS = {
    "gsm_symbolic": Level("gsm"),
    "gsm_symbolic-easy": Level("gsm", max_steps=2),
    "gsm_symbolic-hard": Level("gsm", min_steps=4),
    "arithmetic-easy": Level("arithmetic", terms=3, max_value=20, ops="+-"),
    "arithmetic-medium": Level("arithmetic", terms=4, max_value=30, ops="+-*"),
    "arithmetic-hard": Level("arithmetic", terms=5, max_value=50, ops="+-*"),
}


def normalize_number(text: str) -> str:
    """``"51.0"`` -> ``"51"``, ``"6196.50"`` -> ``"6196.5"``; anything else unchanged (stripped)."""
    text = text.strip().replace(",", "")
    if re.fullmatch(r"-?\d+\.\d*", text):
        text = text.rstrip("0").rstrip(".")
    return text


def problem_key(text: str) -> str:
    """What two problems must share to count as duplicates: case- and whitespace-insensitive text."""
    return " ".join(text.lower().split())


# ---------------------------------------------------------------- gsm_symbolic (reasoning-gym)


def _gsm_steps(cot: str) -> int:
    """Computation steps of a worked solution: lines before ``####`` that contain an equals sign."""
    return sum("=" in line for line in cot.rsplit("####", 1)[0].splitlines())


def _gsm_solution(cot: str, answer: str) -> str:
    body = cot.rsplit("####", 1)[0].rstrip()
    return f"{body}\nThe answer is \\boxed{{{answer}}}."


def _gsm_items(level: Level, seed: int, size: int, max_chars: int | None):
    import reasoning_gym

    # Draw in growing blocks so filtering by level stays deterministic for a given seed.
    out, start, block = [], 0, max(64, 4 * size)
    while len(out) < size:
        data = reasoning_gym.create_dataset("gsm_symbolic", size=start + block, seed=seed)
        for i in range(start, start + block):
            entry = data[i]
            cot = entry["metadata"]["answer_cot"]
            if not level.min_steps <= _gsm_steps(cot) <= level.max_steps:
                continue
            answer = normalize_number(str(entry["answer"]))
            solution = _gsm_solution(cot, answer)
            if max_chars is not None and len(solution) > max_chars:
                continue
            out.append({"problem": entry["question"], "answer": answer, "solution": solution})
            if len(out) == size:
                break
        start += block
        if start > 200 * max(size, 1) + 10_000:
            raise RuntimeError(f"could not draw {size} gsm_symbolic problems for {level}; lower the size")
    return out


# ---------------------------------------------------------------- multi-step arithmetic (ours)


def _arithmetic_item(rng: random.Random, level: Level) -> dict:
    values = [rng.randint(2, level.max_value) for _ in range(level.terms)]
    ops = [rng.choice(level.ops) for _ in range(level.terms - 1)]
    problem = "Calculate " + " ".join(f"{v} {o}" for v, o in zip(values, ops)) + f" {values[-1]}."
    steps = []
    # Multiplications first (precedence), then additions and subtractions left to right: the order a person uses.
    vals, rest_ops = [values[0]], []
    for op, v in zip(ops, values[1:]):
        if op == "*":
            prod = vals[-1] * v
            steps.append(f"{vals[-1]} * {v} = {prod}")
            vals[-1] = prod
        else:
            vals.append(v)
            rest_ops.append(op)
    if steps and rest_ops:
        steps.append("Now " + " ".join(f"{v} {o}" for v, o in zip(vals, rest_ops)) + f" {vals[-1]}")
    acc = vals[0]
    for op, v in zip(rest_ops, vals[1:]):
        new = acc + v if op == "+" else acc - v
        steps.append(f"{acc} {op} {v} = {new}")
        acc = new
    intro = "Multiplication first, then left to right.\n" if "*" in ops else "Left to right.\n"
    solution = intro + "\n".join(steps) + f"\nThe answer is \\boxed{{{acc}}}."
    return {"problem": problem, "answer": str(acc), "solution": solution}


def _arithmetic_items(level: Level, seed: int, size: int, max_chars: int | None):
    rng = random.Random(seed)
    out = []
    while len(out) < size:
        item = _arithmetic_item(rng, level)
        if max_chars is None or len(item["solution"]) <= max_chars:
            out.append(item)
    return out


# ---------------------------------------------------------------- public API


def _check_name(name: str) -> Level:
    if name not in BENCHMARKS:
        raise ValueError(f"unknown built-in benchmark {name!r}; choose from {sorted(BENCHMARKS)}")
    return BENCHMARKS[name]


def _items(name: str, seed: int, size: int, max_chars: int | None):
    level = _check_name(name)
    make = _gsm_items if level.family == "gsm" else _arithmetic_items
    # Each name gets its own stream, so adding a benchmark never changes another one's problems.
    offset = sorted(BENCHMARKS).index(name) * 1_000_003
    return make(level, seed + offset, size, max_chars)


@cache
def _eval_items(name: str) -> tuple:
    return tuple(_items(name, EVAL_SEED, EVAL_SIZE, None))


def evaluation_problems(name: str, limit: int | None = None, offset: int = 0) -> list[dict]:
    """The built-in evaluation set ``name``: dicts with ``id``, ``problem``, ``answer``: ``limit`` problems from
    position ``offset`` (ids keep their position in the whole set, so a problem's id and sampling seed do not depend
    on the slice)."""
    items = _eval_items(name)
    if offset >= len(items):
        raise ValueError(f"offset {offset}: the built-in benchmark {name!r} has {len(items)} problems")
    stop = None if limit is None else offset + limit
    return [
        {"id": f"{name}/{i}", "problem": it["problem"], "answer": it["answer"]}
        for i, it in enumerate(items[offset:stop], start=offset)
    ]


@lru_cache(maxsize=1)
def evaluation_keys() -> frozenset:
    """Normalised problem texts of every built-in evaluation set (for the de-duplication check)."""
    return frozenset(problem_key(it["problem"]) for name in BENCHMARKS for it in _eval_items(name))


def training_records(
    name: str,
    size: int,
    *,
    seed: int = TRAIN_SEED,
    max_solution_chars: int | None = 260,
    instruction: str = INSTRUCTION,
) -> list[dict]:
    """``size`` training records for benchmark family ``name``, disjoint from every built-in evaluation set.

    Each record: ``prompt`` (problem + instruction, as evaluation prompts it), ``completion`` (a worked solution
    ending in ``\\boxed{answer}``), ``problem``, ``answer``, ``source``. ``max_solution_chars`` keeps solutions short:
    at 260 characters, gsm_symbolic solutions average 60-100 SmolLM2 tokens (at most about 135; SmolLM2 splits
    numbers into digits); ``None`` keeps all. Problems repeated within the training set are dropped too.
    """
    if seed == EVAL_SEED:
        raise ValueError("seed equals EVAL_SEED: training records must not be drawn from the evaluation stream")
    banned, out, want = set(evaluation_keys()), [], size
    while len(out) < size:
        # Over-draw, then top up from a later stream if de-duplication removed some.
        for item in _items(name, seed, want + 16, max_solution_chars):
            key = problem_key(item["problem"])
            if key in banned:
                continue
            banned.add(key)
            out.append(
                {
                    "prompt": f"{item['problem']}\n\n{instruction}".strip(),
                    "completion": item["solution"],
                    "problem": item["problem"],
                    "answer": item["answer"],
                    "source": name,
                }
            )
            if len(out) == size:
                break
        seed, want = seed + 9_999_991, size - len(out)
    return out
