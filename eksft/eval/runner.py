"""``eksft eval`` end to end: load benchmarks, sample, check answers, resume, write results (docs/evaluation.md).

Resuming: every finished problem's ``n`` samples are appended to ``samples.jsonl`` at once. A rerun with the same
output folder reads that file, keeps the problems that have all ``n`` samples, drops partial ones (a crash
mid-write) and samples only what is missing. Settings that change the samples are stored in ``run_config.json``;
resuming with different ones is refused rather than silently mixing two protocols.
"""

from __future__ import annotations

import json
from pathlib import Path

from .benchmarks import load_benchmark
from .config import EvalConfig
from .parallel import check_parallel, sample_in_workers
from .report import comparison_text, paired_comparisons, side_by_side, summarize, write_outputs
from .samples import model_source, read_samples, sample_benchmark
from .sampling import choose_backend, make_sampler
from .verify import parse_gold

__all__ = ["EvalConfig", "evaluate"]


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
                sample_benchmark(cfg, sampler, model, bench, golds, done, samples_path)
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
