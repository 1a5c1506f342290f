"""``eksft eval --data-parallel N``: the problems split over N worker processes (one GPU each, ``--tensor-parallel``
GPUs each with vLLM, or CPU processes with a share of the threads where no GPU is visible), merged into the results
folder one process writes (docs/evaluation.md, "Evaluating across a node").

Same numbers as one process: a problem's samples depend only on the seed and the ``generate`` call it is part of,
and the workers make the calls one process makes. The HF backend seeds a call by its first problem and groups the
problems in fixed slices of the benchmark (``samples.sample_benchmark``), so whole slices are dealt to the workers;
vLLM seeds every problem itself (``SamplingParams(seed=...)``), so its problems are dealt one by one.

Files: worker ``i`` appends each finished problem's samples to ``workers/worker-<i>.jsonl`` (samples.jsonl lines)
and logs to ``workers/worker-<i>.log``. When the workers end, their problems are appended to samples.jsonl in
benchmark order (for a fresh run, the file one process writes) and ``workers/`` is removed. A worker that dies
leaves its finished problems in its file; this merge (or the next run's, if the parent died too) keeps them, so a
rerun samples only what is missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

WORKERS = "workers"
#: Test hook ``INDEX:PROBLEMS``: worker INDEX exits (``os._exit``, no clean-up) once it has written that many problems.
FAULT_ENV = "EKSFT_EVAL_WORKER_EXIT"
FAULT_CODE = 75


class WorkerFailed(RuntimeError):
    """A worker process exited with an error; the problems it (and the others) finished are kept."""


def cuda_devices() -> list[str]:
    """The GPUs this process sees, as ``CUDA_VISIBLE_DEVICES`` entries for the workers (empty without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return []
    count = torch.cuda.device_count()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    ids = [x.strip() for x in visible.split(",") if x.strip()] if visible else [str(i) for i in range(count)]
    return ids[:count]


def cpu_cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_data_parallel(tensor_parallel: int = 1) -> int:
    """Every visible GPU (``tensor_parallel`` per worker); 1 without GPUs."""
    return max(1, len(cuda_devices()) // tensor_parallel)


def check_parallel(cfg, backend: str) -> None:
    """Refuse a ``data_parallel`` x ``tensor_parallel`` layout this machine or backend cannot run."""
    dp, tp = cfg.data_parallel, cfg.tensor_parallel
    if tp > 1 and backend != "vllm":
        raise ValueError(
            f"EvalConfig.tensor_parallel {tp} needs the vLLM backend (the {backend} backend keeps a model on one "
            "device); use --backend vllm, or set it to 1"
        )
    if dp * tp == 1:
        return
    devices = cuda_devices()
    if devices and dp * tp > len(devices):
        raise ValueError(
            f"EvalConfig.data_parallel {dp} x EvalConfig.tensor_parallel {tp} needs {dp * tp} GPUs, "
            f"{len(devices)} are visible; lower EvalConfig.data_parallel"
        )
    if not devices and dp * tp > cpu_cores():
        raise ValueError(
            f"EvalConfig.data_parallel {dp} x EvalConfig.tensor_parallel {tp} = {dp * tp} processes, but no GPU is "
            f"visible and this process may use {cpu_cores()} CPU cores; lower EvalConfig.data_parallel"
        )


def plan(cfg, benches: list, done: dict, backend: str, workers: int) -> list[list[dict]]:
    """Per worker, its ``generate`` calls ``{"model", "benchmark", "problems", "done"}`` (``done``: ids of that
    call's problems already sampled): the calls one process would make that lack a problem, dealt round-robin over
    at most ``workers`` workers (none gets nothing to do)."""
    from .sampling import VLLMSampler, hf_group_size

    unit = 1 if backend == "vllm" else hf_group_size(cfg.sampling)
    units = []
    for model in cfg.models:
        for bench in benches:
            for start in range(0, len(bench.problems), unit):
                group = bench.problems[start : start + unit]
                if any((model, bench.name, p["id"]) not in done for p in group):
                    units.append((model, bench.name, group))
    count = min(workers, len(units))
    shares = []
    for share in (units[i::count] for i in range(count)):
        calls = []
        for model, bench, group in share:
            last = calls[-1] if calls else None
            if (  # vLLM: a worker's problems of one model and benchmark in calls of up to its group size
                backend == "vllm"
                and last
                and (last["model"], last["benchmark"]) == (model, bench)
                and len(last["problems"]) < VLLMSampler.group_size
            ):
                last["problems"] += group
            else:
                calls.append({"model": model, "benchmark": bench, "problems": list(group), "done": []})
        for call in calls:
            call["done"] = [p["id"] for p in call["problems"] if (call["model"], call["benchmark"], p["id"]) in done]
        shares.append(calls)
    return shares


def worker_envs(count: int, tensor_parallel: int) -> tuple[list[dict], int | None]:
    """The environment of each worker and its torch threads (None on GPUs): ``CUDA_VISIBLE_DEVICES`` with its own
    ``tensor_parallel`` GPUs, or on CPUs an equal share of this process's torch threads; and ``PYTHONPATH`` leading
    to this ``eksft``."""
    import site

    import torch

    base = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])  # a checkout's root; an installed eksft needs none
    if root not in (*site.getsitepackages(), site.getusersitepackages()):
        base["PYTHONPATH"] = os.pathsep.join(x for x in (root, base.get("PYTHONPATH")) if x)
    devices = cuda_devices()
    if devices:
        tp = tensor_parallel
        return [{**base, "CUDA_VISIBLE_DEVICES": ",".join(devices[i * tp : (i + 1) * tp])} for i in range(count)], None
    threads = max(1, torch.get_num_threads() // count)
    return [{**base, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}] * count, threads


def sample_in_workers(cfg, benches: list, done: dict, samples_path: Path, backend: str, log=print) -> None:
    """Sample every problem ``done`` lacks in ``cfg.data_parallel`` worker processes; add them to samples.jsonl and
    ``done``. Raises :class:`WorkerFailed` when a worker fails (after keeping what every worker finished)."""
    from .samples import model_source

    folder = samples_path.parent / WORKERS
    kept = merge(folder, samples_path, cfg, benches, done)  # a run whose parent died too
    if kept:
        log(f"[eval] kept {kept} problem(s) a previous run's workers had finished")
    _clean(folder)  # an earlier run's specs, logs and errors
    shares = plan(cfg, benches, done, backend, cfg.data_parallel)
    if not shares:
        return
    total = sum(len(c["problems"]) - len(c["done"]) for share in shares for c in share)
    envs, threads = worker_envs(len(shares), cfg.tensor_parallel)
    where = f"{threads} thread(s) each" if threads else f"{cfg.tensor_parallel} GPU(s) each"
    log(f"[eval] {total} problem(s) to sample on {len(shares)} worker process(es), {where} ({backend} backend)")
    sources = {m: model_source(m) for m in cfg.models if any(c["model"] == m for s in shares for c in s)}
    folder.mkdir(exist_ok=True)
    procs = []
    try:
        for i, (calls, env) in enumerate(zip(shares, envs)):
            spec = {"index": i, "config": asdict(cfg), "backend": backend, "sources": sources, "threads": threads}
            spec.update(calls=calls, samples=str(folder / f"worker-{i}.jsonl"))
            (folder / f"worker-{i}.json").write_text(json.dumps(spec))
            with open(folder / f"worker-{i}.log", "w") as out:
                cmd = [sys.executable, "-m", "eksft.eval.parallel", str(folder / f"worker-{i}.json")]
                procs.append(subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT))
        _wait(procs, folder, total, cfg)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait()
        merge(folder, samples_path, cfg, benches, done)
    failed = [(i, p.returncode) for i, p in enumerate(procs) if p.returncode != 0]
    if failed:
        raise _failure(folder, failed, len(procs))
    _clean(folder)


def _wait(procs: list, folder: Path, total: int, cfg) -> None:
    """Until every worker has ended; a progress bar of the problems their files hold."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, unit="problem", desc=f"{len(procs)} workers", disable=not cfg.progress)
    offsets, lines = {}, {}
    while True:
        running = any(p.poll() is None for p in procs)
        for shard in folder.glob("worker-*.jsonl"):
            with shard.open("rb") as f:
                f.seek(offsets.get(shard, 0))
                chunk = f.read()
            offsets[shard] = offsets.get(shard, 0) + len(chunk)
            lines[shard] = lines.get(shard, 0) + chunk.count(b"\n")
        bar.update(min(total, sum(lines.values()) // cfg.sampling.n) - bar.n)
        if not running:
            break
        time.sleep(0.5)
    bar.close()


def _failure(folder: Path, failed: list, count: int) -> Exception:
    """The error of failed workers: a user error (the worker's ``worker-<i>.error``, the same in every worker) as a
    ValueError, else :class:`WorkerFailed` naming the worker, its last log line and its log."""
    i, code = failed[0]
    if (folder / f"worker-{i}.error").is_file():
        return ValueError((folder / f"worker-{i}.error").read_text())
    log = folder / f"worker-{i}.log"
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    last = next((x for x in reversed(lines) if x.strip()), "")
    return WorkerFailed(
        f"eval worker {i} of {count} exited with code {code} ({last.strip()[:200] or 'no output'}); "
        f"{len(failed)} worker(s) failed, their finished problems are kept in samples.jsonl: rerun the same command to "
        f"sample only the rest (log: {log})"
    )


def merge(folder: Path, samples_path: Path, cfg, benches: list, done: dict) -> int:
    """Append the complete problems of the workers' files that ``done`` lacks to samples.jsonl (benchmark order) and
    to ``done``; remove those files. Returns how many problems were added."""
    from .samples import read_samples

    shards = sorted(folder.glob("worker-*.jsonl"))
    if not shards:
        return 0
    found = {}
    for shard in shards:
        found.update(read_samples(shard, cfg.sampling.n))
    order = [(m, b.name, p["id"]) for m in cfg.models for b in benches for p in b.problems]
    known = set(order)
    new = [k for k in order if k in found and k not in done] + [k for k in found if k not in known and k not in done]
    with samples_path.open("a") as f:
        for key in new:
            f.writelines(json.dumps(r) + "\n" for r in found[key])
            done[key] = found[key]
        f.flush()
        os.fsync(f.fileno())
    for shard in shards:
        shard.unlink()
    return len(new)


def _clean(folder: Path) -> None:
    """Remove the workers' specs and logs (their samples are merged by now), then the folder if it is empty."""
    if not folder.is_dir():
        return
    for path in folder.glob("worker-*.*"):
        if path.suffix in (".json", ".log", ".error"):
            path.unlink()
    if not any(folder.iterdir()):
        folder.rmdir()


def worker_main(spec_path: str) -> int:
    """One worker: sample its calls, appending each finished problem's lines to its file at once. A user error (bad
    model, tokenizer without chat template) goes to ``worker-<i>.error`` for the parent to say; exit code 2."""
    from eksft.cli import _user_errors

    spec = json.loads(Path(spec_path).read_text())
    try:
        return _work(spec)
    except _user_errors() as err:
        print(f"eksft eval: {err}", file=sys.stderr, flush=True)
        Path(spec_path).with_suffix(".error").write_text(str(err) or type(err).__name__)
        return 2


def _work(spec: dict) -> int:
    from .config import EvalConfig
    from .samples import sample_group
    from .sampling import SamplingConfig, make_sampler
    from .verify import parse_gold

    if spec["threads"]:
        import torch

        torch.set_num_threads(spec["threads"])
    values = dict(spec["config"])
    cfg = EvalConfig(**{**values, "sampling": SamplingConfig(**values["sampling"])})
    index, samples = spec["index"], Path(spec["samples"])
    die = os.environ.get(FAULT_ENV, "").partition(":")
    die_after = int(die[2]) if die[1] and int(die[0]) == index else None
    total = sum(len(c["problems"]) - len(c["done"]) for c in spec["calls"])
    finished, model, sampler = 0, None, None
    for call in spec["calls"]:
        if call["model"] != model:
            model, sampler = call["model"], None  # free the last model first
            print(f"[eval worker {index}] {model}: loading ({spec['backend']} backend)", flush=True)
            sampler = make_sampler(
                spec["backend"],
                spec["sources"][model],
                cfg.sampling,
                dtype=cfg.dtype,
                gguf_file=cfg.gguf_file,
                tensor_parallel=cfg.tensor_parallel,
            )
        bench, problems = call["benchmark"], call["problems"]
        golds = {(bench, p["id"]): parse_gold(p["answer"], cfg.verify_timeout) for p in problems}
        done = {(model, bench, pid): None for pid in call["done"]}
        finished += sample_group(cfg, sampler, model, bench, problems, golds, done, samples)
        print(f"[eval worker {index}] {finished}/{total} problems", flush=True)
        if die_after is not None and finished >= die_after:
            os._exit(FAULT_CODE)
    return 0


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1]))
