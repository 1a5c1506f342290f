"""Drawing and storing samples: the per-problem seed, the fixed slices of a benchmark sampled together, the
``samples.jsonl`` lines (one per sample, with its checks) and reading them back on resume. Used by one process
(``runner.evaluate``) and by each worker of ``--data-parallel`` (``parallel``) alike, so both draw the same samples."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

from .config import EvalConfig
from .report import CHECKS
from .verify import check_answer


def problem_seed(seed: int, benchmark: str, problem_id: str) -> int:
    """A stable per-problem seed (crc32, not ``hash``: Python salts string hashes per process)."""
    return (seed * 1_000_003 + zlib.crc32(f"{benchmark}\0{problem_id}".encode())) % 2**63


def read_samples(path: Path, n: int) -> dict:
    """``(model, benchmark, problem_id) -> lines`` of problems with all ``n`` samples; rewrites away partial ones."""
    if not path.exists():
        return {}
    from eksft.text_files import jsonl_objects

    groups, text = {}, path.read_text()
    lines = text.splitlines()
    for _, rec in jsonl_objects(text, str(path), on_torn_last=lambda _: None):  # a torn last line: the interruption
        groups.setdefault((rec["model"], rec["benchmark"], rec["problem_id"]), []).append(rec)
    complete = {key: recs for key, recs in groups.items() if len(recs) == n}
    if len(complete) != len(groups) or sum(map(len, groups.values())) != len([x for x in lines if x.strip()]):
        with path.open("w") as f:  # keep only whole problems so the file stays consistent
            for recs in complete.values():
                f.writelines(json.dumps(r) + "\n" for r in recs)
    return complete


def model_source(name: str) -> str:
    """What to load for MODEL ``name``: the built-in aliases as ``eksft train`` resolves them (``tiny-random-llama``
    is the seed-0 random model, written once to the eksft cache; ``smollm2-135m-instruct`` the converted GGUF);
    any other name unchanged. Results stay keyed by the name the user gave."""
    low = str(name).lower()
    if low == "tiny-random-llama":
        import shutil
        import tempfile

        from eksft.models.smollm import cache_dir
        from eksft.models.tiny import save_tiny

        target = cache_dir() / "tiny-random-llama"
        if not (target / "config.json").exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".tiny-random-llama-", dir=target.parent))
            save_tiny(tmp, seed=0)
            try:
                tmp.rename(target)
            except OSError:  # written meanwhile by another run
                shutil.rmtree(tmp, ignore_errors=True)
        return str(target)
    if low in ("smollm2-135m-instruct", "smollm2"):
        from eksft.models.smollm import resolve_model_path

        return resolve_model_path(name)
    return name


def sample_benchmark(cfg: EvalConfig, sampler, model: str, bench, golds: dict, done: dict, samples_path: Path) -> None:
    """Sample the problems of ``bench`` that ``model`` lacks in ``done``, with a progress bar.

    Fixed slices of the benchmark, whatever is already done: a resumed run forms the groups (and so draws the
    samples) an uninterrupted run would, and keeps only the problems it lacks."""
    from tqdm.auto import tqdm

    missing = sum((model, bench.name, p["id"]) not in done for p in bench.problems)
    bar = tqdm(
        total=len(bench.problems),
        initial=len(bench.problems) - missing,
        desc=f"{_short(model)} | {bench.name}",
        unit="problem",
        disable=not cfg.progress,
    )
    size = sampler.group_size
    for start in range(0, len(bench.problems), size):
        group = bench.problems[start : start + size]
        if all((model, bench.name, p["id"]) in done for p in group):
            continue
        bar.update(sample_group(cfg, sampler, model, bench.name, group, golds, done, samples_path))
    bar.close()


def sample_group(
    cfg: EvalConfig, sampler, model: str, bench: str, group: list, golds: dict, done: dict, samples_path: Path
) -> int:
    """Sample one slice of problems; append the ``n`` lines of each problem ``done`` lacks to samples.jsonl at once
    (and to ``done``); return how many problems were added."""
    prompts = [sampler.prompt(p["problem"]) for p in group]
    seeds = [problem_seed(cfg.seed, bench, p["id"]) for p in group]
    results = sampler.sample(prompts, seeds)
    new = 0
    with samples_path.open("a") as f:
        for p, prompt, seed, samples in zip(group, prompts, seeds, results):
            key = (model, bench, p["id"])
            if key in done:
                continue
            recs = [
                _record(model, bench, p, prompt, seed, j, s, golds[(bench, p["id"])], cfg)
                for j, s in enumerate(samples)
            ]
            f.writelines(json.dumps(r) + "\n" for r in recs)
            done[key] = recs
            new += 1
        f.flush()
    return new


def _short(model: str) -> str:
    return Path(model.rstrip("/")).name or model


def _record(model, bench, problem, prompt, seed, index, sample, gold, cfg: EvalConfig) -> dict:
    verdict = check_answer(gold, sample.text, extraction=cfg.extraction, timeout=cfg.verify_timeout)
    # The other cheap checks too, so a format failure (right last number, no \boxed{}) shows next to a skill failure.
    checks = {cfg.extraction: verdict.correct}
    for other in CHECKS:
        if other not in checks:
            checks[other] = check_answer(gold, sample.text, extraction=other, timeout=cfg.verify_timeout).correct
    return {
        "model": model,
        "benchmark": bench,
        "problem_id": problem["id"],
        "sample_index": index,
        "seed": seed,
        "problem": problem["problem"],
        "gold": problem["answer"],
        "prompt": prompt,
        "completion": sample.text,
        "answer": verdict.answer,
        "correct": verdict.correct,
        "checks": checks,
        "num_tokens": sample.num_tokens,
        "truncated": sample.truncated,
        "mean_entropy": sample.mean_entropy,
    }
