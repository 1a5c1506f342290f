"""Tokens/s of ``eksft eval``'s two sampling backends on the same prompts.

Runs eksft's own samplers (``HFSampler``: batched ``model.generate``; ``VLLMSampler``: ``vllm.LLM.generate``) on the
first ``--problems`` problems of a built-in benchmark, ``--n`` samples each, at most ``--max-new-tokens`` tokens, and
prints one JSON line per backend: start-up seconds (import + load, and for vLLM engine start), generation wall
seconds, generated tokens (eos excluded), tokens/s, CPU seconds (this process and its children: vLLM's engine and
worker), tokens per CPU second (less sensitive to other jobs on a shared machine) and the 1-minute load average.

Needs .venv-vllm (``make test-vllm`` builds it). ``--threads N`` gives both backends the same compute: HF
``torch.set_num_threads(N)``, vLLM's CPU worker the first N cores (``VLLM_CPU_OMP_THREADS_BIND``, unless set; eksft's
own default binds every core the process may use). Example (the numbers in
docs/evaluation.md):

    VLLM_CPU_KVCACHE_SPACE=2 .venv-vllm/bin/python benchmarks/eval_backends.py --problems 8 --n 4 \\
        --max-new-tokens 96 --threads 1 --backend hf vllm
"""

from __future__ import annotations

import argparse
import json
import os
import time


def _children_cpu() -> float:
    """CPU seconds of this process's children (vLLM's engine and worker processes) so far."""
    import psutil

    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            t = child.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def run(backend: str, args) -> dict:
    from eksft.eval.benchmarks import load_benchmark
    from eksft.eval.sampling import HFSampler, SamplingConfig, VLLMSampler
    from eksft.models.smollm import resolve_model_path

    path = resolve_model_path(args.model)
    cfg = SamplingConfig(
        n=args.n, temperature=args.temperature, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size
    )
    problems = load_benchmark(args.benchmark, limit=args.problems).problems
    t0 = time.time()
    if backend == "vllm":
        from eksft.eval.sampling import cpu_id_list

        extra = {"enforce_eager": False} if args.compile else {}  # eksft's CPU default: eager
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", cpu_id_list(sorted(os.sched_getaffinity(0))[: args.threads]))
        sampler = VLLMSampler(path, cfg, args.dtype, **extra)
    else:
        import torch

        from eksft.models.loading import load_model_and_tokenizer

        torch.set_num_threads(args.threads)
        model, tokenizer = load_model_and_tokenizer(path, dtype=args.dtype)
        sampler = HFSampler(model, tokenizer, cfg)
    startup = time.time() - t0
    t1, c1, k1 = time.time(), time.process_time(), _children_cpu()
    tokens = 0
    size = sampler.group_size if backend == "vllm" else max(1, cfg.batch_size // cfg.n)
    for start in range(0, len(problems), size):
        group = problems[start : start + size]
        prompts = [sampler.prompt(p["problem"]) for p in group]
        results = sampler.sample(prompts, [1000 + start + i for i in range(len(group))])
        tokens += sum(s.num_tokens for samples in results for s in samples)
    wall = time.time() - t1
    cpu = time.process_time() - c1 + _children_cpu() - k1
    return {
        "backend": backend + ("-compiled" if backend == "vllm" and args.compile else ""),
        "problems": len(problems),
        "n": cfg.n,
        "max_new_tokens": cfg.max_new_tokens,
        "temperature": cfg.temperature,
        "batch": min(size, len(problems)) * cfg.n,
        "startup_s": round(startup, 1),
        "generate_s": round(wall, 1),
        "tokens": tokens,
        "tokens_per_s": round(tokens / wall, 1),
        "cpu_s": round(cpu, 1),
        "tokens_per_cpu_s": round(tokens / cpu, 1),
        "threads": args.threads,
        "load_avg_1m": os.getloadavg()[0],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", nargs="+", default=["hf", "vllm"], choices=["hf", "vllm"])
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--benchmark", default="arithmetic-easy")
    p.add_argument("--problems", type=int, default=8)
    p.add_argument("--n", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=32, help="HF sequences per generate call")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the HF backend, cores of vLLM's worker")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--compile", action="store_true", help="vLLM with torch.compile (eksft's CPU default: eager)")
    args = p.parse_args()
    for backend in args.backend:
        print(json.dumps(run(backend, args)), flush=True)


if __name__ == "__main__":
    main()
