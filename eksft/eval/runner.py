"""``eksft eval`` end to end: load benchmarks, sample, check answers, resume, write results (docs/evaluation.md).

Resuming: every finished problem's ``n`` samples are appended to ``samples.jsonl`` at once. A rerun with the same
output folder reads that file, keeps the problems that have all ``n`` samples, drops partial ones (a crash
mid-write) and samples only what is missing. Settings that change the samples are stored in ``run_config.json``;
resuming with different ones is refused rather than silently mixing two protocols.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .benchmarks import load_benchmark
from .intervals import RESAMPLES
from .parallel import check_parallel, sample_in_workers
from .report import CHECKS, comparison_text, paired_comparisons, side_by_side, summarize, write_outputs
from .sampling import BACKENDS, DTYPES, SamplingConfig, choose_backend, make_sampler
from .verify import EXTRACTIONS, check_answer, parse_gold


@dataclass
class EvalConfig:
    models: list[str] = field(
        metadata={
            "help": "local model folders, hub names or built-in models "
            "(tiny-random-llama, smollm2-135m-instruct); several are compared"
        }
    )
    benchmarks: list[str] = field(
        metadata={"help": "built-in benchmarks, .jsonl/.json/.parquet files, LAYOUT:FILE or a layout's hub dataset"}
    )
    output_dir: str = field(metadata={"help": "results, samples and plots go here; rerun to resume"})
    ks: list[int] = field(
        default_factory=lambda: [1, 8, 32], metadata={"help": "comma-separated k for pass@k, each k <= n"}
    )
    sampling: SamplingConfig = field(default_factory=SamplingConfig, metadata={"help": "how answers are sampled"})
    seed: int = field(default=0, metadata={"help": "same seed, same samples (HF backend)"})
    backend: str = field(
        default="auto", metadata={"help": "auto: vLLM when importable with a GPU, else hf", "choices": BACKENDS}
    )
    dtype: str = field(default="auto", metadata={"help": "auto, float32, bfloat16 or float16", "choices": DTYPES})
    gguf_file: str | None = field(default=None, metadata={"help": "GGUF file name inside each model folder"})
    limit: int | None = field(
        default=None, metadata={"help": "evaluate only the first N problems of each benchmark", "range": "[1, inf)"}
    )
    offset: int = field(
        default=0,
        metadata={
            "help": "skip the first N problems of each benchmark (then --limit applies): held-out problems for a "
            "confirmation run; ids and sampling seeds stay those of the whole benchmark",
            "range": "[0, inf)",
        },
    )
    extraction: str = field(
        default="last_boxed",
        metadata={
            "help": (
                "last_boxed: the final \\boxed{} is the answer; math_verify: parse the whole completion; last_number: "
                "the last number in the completion (base models without \\boxed{}); samples.jsonl records last_boxed "
                "and last_number "
                "checks either way"
            ),
            "choices": EXTRACTIONS,
        },
    )
    verify_timeout: int = field(
        default=5, metadata={"help": "seconds per math-verify parse or comparison", "range": "[1, inf)"}
    )
    problem_column: str | None = field(default=None, metadata={"help": "problem column of file benchmarks"})
    answer_column: str | None = field(default=None, metadata={"help": "gold answer column of file benchmarks"})
    id_column: str | None = field(
        default=None, metadata={"help": "id column of file benchmarks (default: detected or row index)"}
    )
    progress: bool = field(default=True, metadata={"help": "tqdm progress bars"})
    data_parallel: int = field(
        default=1,
        metadata={
            "help": "worker processes the problems are split over: one GPU each, or without GPUs CPU processes "
            "sharing the threads; the samples equal one process's (docs/evaluation.md)",
            "range": "[1, inf)",
        },
    )
    tensor_parallel: int = field(
        default=1,
        metadata={
            "help": "GPUs per model (vLLM backend), for a model that does not fit one GPU; data parallel x tensor "
            "parallel GPUs in all",
            "range": "[1, inf)",
        },
    )
    protocol: str | None = field(
        default=None,
        metadata={
            "help": (
                "preset sampling settings (eksft.eval.protocols), recorded with the results; flags given explicitly "
                "override it; without it the paper's values are the defaults"
            )
        },
    )
    bootstrap_resamples: int = field(
        default=RESAMPLES,
        metadata={"help": "resamples of the bootstrap over problems behind every 95% interval", "range": "[1, inf)"},
    )
    bootstrap_seed: int = field(default=0, metadata={"help": "seed of those resamples (same seed, same interval)"})

    def validate(self) -> None:
        """Errors name the field (``EvalConfig.ks``, ``EvalConfig.sampling.n``); ``eksft eval`` prints its flags.
        Choices and ranges are the fields' metadata (``config_io.check_fields``)."""
        from eksft.config_io import check_fields

        check_fields(self, "EvalConfig")
        check_fields(self.sampling, "EvalConfig.sampling")
        n = self.sampling.n
        too_big = [k for k in self.ks if k > n]
        if too_big:
            raise ValueError(
                f"EvalConfig.ks {too_big} exceeds EvalConfig.sampling.n {n}: "
                "pass@k needs at least k samples per problem; "
                f"raise EvalConfig.sampling.n to {max(too_big)} or drop those k"
            )
        if any(k < 1 for k in self.ks) or not self.ks:
            raise ValueError(f"EvalConfig.ks {self.ks}: every k must be a positive integer")
        if not self.models or not self.benchmarks:
            raise ValueError("EvalConfig.models and EvalConfig.benchmarks: give at least one of each")

    def sample_settings(self) -> dict:
        """What the samples depend on; a resumed run must match it."""
        return {"sampling": asdict(self.sampling), "seed": self.seed, "extraction": self.extraction}


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


def _check_resume(out: Path, cfg: EvalConfig) -> None:
    """Refuse to resume with settings that change the samples; record the resolved settings in run_config.json.

    run_config.json holds the sample settings plus ``protocol`` and ``ks`` (recorded, not compared: they do not
    change the samples)."""
    path = out / "run_config.json"
    settings = cfg.sample_settings()
    if path.exists():
        old = json.loads(path.read_text())
        old_settings = {k: v for k, v in old.items() if k not in ("protocol", "ks")}
        if old_settings != settings:
            diff = sorted(k for k in set(old_settings) | set(settings) if old_settings.get(k) != settings.get(k))
            raise ValueError(
                f"{out} holds samples made with other settings ({diff}: {[old.get(k) for k in diff]}); "
                "use a new EvalConfig.output_dir, "
                "or delete samples.jsonl and run_config.json there"
            )
    path.write_text(json.dumps({**settings, "protocol": cfg.protocol, "ks": cfg.ks}, indent=2) + "\n")


def evaluate(cfg: EvalConfig, log=print) -> dict:
    """Run the evaluation; return ``{benchmark: {model: metrics}}`` (also written to ``cfg.output_dir``)."""
    cfg.validate()
    backend = choose_backend(cfg.backend)
    check_parallel(cfg, backend)
    benches, golds = _load_benchmarks(cfg)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    _check_resume(out, cfg)
    samples_path = out / "samples.jsonl"
    done = read_samples(samples_path, cfg.sampling.n)
    if cfg.data_parallel > 1:
        sample_in_workers(cfg, benches, done, samples_path, backend, log)
        return _summarize_and_write(cfg, out, benches, done, backend, log)
    for model in cfg.models:
        if all((model, b.name, p["id"]) in done for b in benches for p in b.problems):
            continue
        log(f"[eval] {model}: loading ({backend} backend)")
        sampler = make_sampler(
            backend,
            model_source(model),
            cfg.sampling,
            dtype=cfg.dtype,
            gguf_file=cfg.gguf_file,
            tensor_parallel=cfg.tensor_parallel,
        )
        try:
            for bench in benches:
                _sample_benchmark(cfg, sampler, model, bench, golds, done, samples_path)
        finally:
            getattr(sampler, "close", lambda: None)()  # vLLM: stop its engine process now
        del sampler  # free the model before loading the next one
    return _summarize_and_write(cfg, out, benches, done, backend, log)


def _load_benchmarks(cfg: EvalConfig) -> tuple[list, dict]:
    """Every benchmark, and ``(benchmark, problem_id) -> parsed gold``. All load (and every gold answer parses)
    before a model is touched: bad data fails in seconds."""
    benches = [
        load_benchmark(
            b,
            problem_column=cfg.problem_column,
            answer_column=cfg.answer_column,
            id_column=cfg.id_column,
            limit=cfg.limit,
            offset=cfg.offset,
        )
        for b in cfg.benchmarks
    ]
    names = [b.name for b in benches]
    if len(set(names)) != len(names):
        raise ValueError(f"two benchmarks share a name {names}; rename one of the files")
    golds = {(b.name, p["id"]): parse_gold(p["answer"], cfg.verify_timeout) for b in benches for p in b.problems}
    return benches, golds


def _sample_benchmark(cfg: EvalConfig, sampler, model: str, bench, golds: dict, done: dict, samples_path: Path) -> None:
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
        bar.update(_sample_group(cfg, sampler, model, bench.name, group, golds, done, samples_path))
    bar.close()


def _sample_group(
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


def _summarize_and_write(cfg: EvalConfig, out: Path, benches: list, done: dict, backend: str, log) -> dict:
    """Metrics of every model on every benchmark, the paired comparisons, the files; the tables go to ``log``."""
    results = {}
    for bench in benches:
        results[bench.name] = {}
        for model in cfg.models:
            lines = [r for p in bench.problems for r in done[(model, bench.name, p["id"])]]
            results[bench.name][model] = summarize(
                lines,
                cfg.ks,
                resamples=cfg.bootstrap_resamples,
                bootstrap_seed=cfg.bootstrap_seed,
                extraction=cfg.extraction,
            )
    config = {
        "models": cfg.models,
        "benchmarks": cfg.benchmarks,
        "ks": cfg.ks,
        "backend": backend,
        "dtype": cfg.dtype,
        "limit": cfg.limit,
        "offset": cfg.offset,
        "protocol": cfg.protocol,
        **cfg.sample_settings(),
        "bootstrap": {"resamples": cfg.bootstrap_resamples, "seed": cfg.bootstrap_seed},
    }
    comparisons = paired_comparisons(results, cfg.ks, resamples=cfg.bootstrap_resamples, seed=cfg.bootstrap_seed)
    write_outputs(out, results, config, comparisons)
    log(side_by_side(results))
    if comparisons:
        log(comparison_text(comparisons))
    return results


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
