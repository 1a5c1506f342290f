"""The demo in the paper's data regime (``DemoConfig.data_regime = "self"``; docs/demo.md, "The paper's data regime").

The paper fine-tunes on traces the policy already imitates well, so EKSFT's top-ρ tokens are the few "forking"
tokens among many it predicts; the demo's own worked solutions are in a format SmolLM2 never writes, so there the
top ρ is the format itself. The closest CPU analogue, stage by stage:

1. **Warm start**: SFT on the demo's training records for ``--steps`` (the demo's own SFT path).
2. **Self-generated traces**: the warm model answers ``trace_problems`` new problems ``trace_samples`` times at
   temperature 1.0 (``eksft.eval``: the same sampling and math-verify check as the evaluation); the correct answers,
   identical ones to the same problem kept once, become a training file. The new problems come from a training
   stream of their own and are disjoint from the demo's training records, its held-out solutions and every built-in
   evaluation set (:func:`new_problems`).
3. Every method continues from the warm model on those traces (``run.run_seed``); the evaluation compares them with
   the warm model, and "KL to base" is KL to the warm model, where continued training starts.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from eksft.data.synthetic import INSTRUCTION, TRAIN_SEED, problem_key, training_records

from .config import DemoConfig
from .stages import log_stage
from .training import train_method

#: Seed of the new problems' stream: far from the demo's training stream (``TRAIN_SEED`` and its top-ups, which
#: step by 9,999,991) and from the evaluation stream; :func:`new_problems` also drops any repeat explicitly.
TRACE_SEED = TRAIN_SEED + 500_000_000
TRACES_FILE = "traces.jsonl"


def new_problems(cfg: DemoConfig, exclude: list[dict]) -> list[dict]:
    """``cfg.trace_problems`` problems of ``cfg.task`` (id, problem, answer) none of which is in ``exclude`` (the
    demo's training records and held-out solutions) or in a built-in evaluation set (``training_records`` drops
    those), and none twice."""
    banned = {problem_key(r["problem"]) for r in exclude}
    want, out = cfg.trace_problems, []
    while len(out) < cfg.trace_problems:
        drawn = training_records(cfg.task, want + len(banned), seed=TRACE_SEED)
        out = [r for r in drawn if problem_key(r["problem"]) not in banned][: cfg.trace_problems]
        want *= 2
    return [{"id": f"new{i}", "problem": r["problem"], "answer": r["answer"]} for i, r in enumerate(out)]


def sample_answers(cfg: DemoConfig, model: str, problems: list[dict], folder: Path, seed: int, log) -> list[dict]:
    """``cfg.trace_samples`` answers of ``model`` to each problem at temperature 1.0, checked against the gold
    answer: ``eksft.eval``'s records (``completion``, ``correct``, ...), resumed from ``folder/samples.jsonl``."""
    from eksft.eval.runner import EvalConfig, evaluate
    from eksft.eval.sampling import SamplingConfig

    folder.mkdir(parents=True, exist_ok=True)
    bench = folder / "new_problems.jsonl"
    bench.write_text("".join(json.dumps(p) + "\n" for p in problems))
    n = cfg.trace_samples
    ecfg = EvalConfig(
        models=[model],
        benchmarks=[str(bench)],
        output_dir=str(folder),
        ks=sorted({1, n}),
        sampling=SamplingConfig(n=n, temperature=1.0, max_new_tokens=cfg.max_new_tokens, batch_size=128),
        seed=seed,
        dtype="float32",
        backend="hf",
    )
    evaluate(ecfg, log=log)
    lines = (folder / "samples.jsonl").read_text().splitlines()
    records = [r for r in map(json.loads, filter(str.strip, lines)) if r["model"] == model]
    order = {p["id"]: i for i, p in enumerate(problems)}
    return sorted(records, key=lambda r: (order[r["problem_id"]], r["sample_index"]))


def keep_traces(records: list[dict]) -> list[dict]:
    """The answers math-verify marked correct, each distinct completion of a problem once (first sample kept), in
    the records' order: ``problem_id``, ``problem``, ``answer`` (gold), ``completion``."""
    seen, out = set(), []
    for r in records:
        key = (r["problem_id"], r["completion"].strip())
        if r["correct"] is not True or key in seen:
            continue
        seen.add(key)
        out.append(
            {"problem_id": r["problem_id"], "problem": r["problem"], "answer": r["gold"], "completion": r["completion"]}
        )
    return out


def write_traces(traces: list[dict], path: Path) -> Path:
    """Traces as chat messages, the demo's training format (``prepare_data``): the problem with the instruction,
    as evaluation prompts it, and the model's own answer."""
    with path.open("w") as f:
        for t in traces:
            msgs = [
                {"role": "user", "content": f"{t['problem']}\n\n{INSTRUCTION}".strip()},
                {"role": "assistant", "content": t["completion"]},
            ]
            f.write(json.dumps({"messages": msgs, "problem_id": t["problem_id"], "answer": t["answer"]}) + "\n")
    return path


def trace_stats(problems: list[dict], records: list[dict], traces: list[dict]) -> dict:
    correct = sum(r["correct"] is True for r in records)
    return {
        "problems": len(problems),
        "samples": len(records),
        "correct_samples": correct,
        "acceptance_rate": correct / len(records) if records else 0.0,
        "kept_traces": len(traces),
        "duplicates_dropped": correct - len(traces),
        "problems_with_a_trace": len({t["problem_id"] for t in traces}),
        "mean_trace_tokens": sum(r["num_tokens"] for r in records if r["correct"] is True) / correct if correct else 0,
    }


def warm_start_and_traces(
    cfg: DemoConfig, base: str, seed: int, sd: Path, train_file: Path, exclude: list[dict], log
) -> tuple[str, Path, dict, dict]:
    """Stages 1 and 2 for one seed: ``(warm model folder, traces file, warm training record, trace statistics)``."""
    from eksft.methods import Method

    log_stage(log, f"seed {seed}: warm start, SFT on the demo's records ({cfg.lengths[0]} steps x {cfg.batch_size})")
    warm = train_method(cfg, base, Method("sft"), seed, sd / "warm", train_file, log)
    problems = new_problems(cfg, exclude)
    log_stage(
        log, f"seed {seed}: the warm start answers {len(problems)} new problems x {cfg.trace_samples} (temperature 1.0)"
    )
    start = time.time()
    records = sample_answers(cfg, warm["run_dir"], problems, sd / "traces", seed, log)
    traces = keep_traces(records)
    stats = {**trace_stats(problems, records, traces), "sampling_seconds": time.time() - start}
    path = write_traces(traces, sd / "traces" / TRACES_FILE)
    log(
        f"[demo] seed {seed}: {stats['correct_samples']} of {stats['samples']} answers correct "
        f"({stats['acceptance_rate']:.0%}); {stats['kept_traces']} distinct traces for "
        f"{stats['problems_with_a_trace']} of {stats['problems']} problems -> {path}"
    )
    if not traces:
        raise ValueError(
            f"the warm-start model answered none of the {len(problems)} new problems correctly in "
            f"{cfg.trace_samples} samples each, so there are no traces to continue on; raise DemoConfig.steps "
            "(a longer warm start), DemoConfig.trace_problems or DemoConfig.trace_samples"
        )
    return warm["run_dir"], path, warm, stats
