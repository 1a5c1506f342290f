"""Rollout time of ``eksft rl``: the same RL config with HF ``generate`` or vLLM (colocate) rollouts.

Builds the trainer as ``eksft rl`` does (``eksft.rl.run.build_rl_trainer`` on a YAML config plus ``--field value``
overrides), times every generation call of TRL's ``GRPOTrainer`` (``_generate_single_turn``: for vLLM the weight
sync and ``LLM.generate``, for HF ``unwrap_model_for_generation`` and ``model.generate``), trains, and prints one JSON
line: trainer start-up seconds (model load, and for vLLM the engine start), generation calls, generation seconds,
generated tokens, tokens/s, training wall seconds, the dynamic-sampling generation batches and the 1-minute load.
Nothing is saved (``save_strategy: no``). Values are read as YAML (write ``1.0e-6``: YAML reads ``1e-6`` as
text). Needs .venv-vllm for ``--use_vllm true`` (``make test-vllm`` builds it).

    .venv-vllm/bin/python benchmarks/rl_rollouts.py configs/rl_demo_cpu.yaml \\
        --model_name_or_path smollm2-135m-instruct --dtype float32 --use_vllm true --max_steps 2 --output_dir /tmp/r
"""

from __future__ import annotations

import json
import os
import sys
import time

import yaml


def main(argv: list[str]) -> dict:
    from eksft.commands.rl import config_from
    from eksft.jobs.metrics import read_metrics
    from eksft.rl.dynamic_sampling import GENERATION_BATCHES
    from eksft.rl.run import build_rl_trainer

    path, rest = argv[0], argv[1:]
    overrides = {k.removeprefix("--"): yaml.safe_load(v) for k, v in zip(rest[::2], rest[1::2])}  # typed as in YAML
    overrides.update(save_strategy="no", report_to="none")
    cfg = config_from(path, overrides)
    t0 = time.time()
    trainer = build_rl_trainer(cfg)
    startup = time.time() - t0
    calls, tokens, seconds = 0, 0, 0.0
    generate = trainer._generate_single_turn

    def timed(*args, **kwargs):
        nonlocal calls, tokens, seconds
        t = time.perf_counter()
        out = generate(*args, **kwargs)
        seconds += time.perf_counter() - t
        calls += 1
        tokens += sum(len(ids) for ids in out[0])
        return out

    trainer._generate_single_turn = timed
    t1 = time.time()
    trainer.train()
    rows = [r for r in read_metrics(cfg.output_dir) if "reward" in r]
    return {
        "rollouts": "vllm" if cfg.use_vllm else "hf",
        "model": cfg.model_name_or_path,
        "steps": len(rows),
        "completions_per_call": cfg.generation_batch_size,
        "max_completion_length": cfg.max_completion_length,
        "startup_s": round(startup, 1),
        "generate_calls": calls,
        "generate_s": round(seconds, 1),
        "tokens": tokens,
        "tokens_per_s": round(tokens / seconds, 1),
        "train_s": round(time.time() - t1, 1),
        "generation_batches": [r.get(GENERATION_BATCHES) for r in rows],
        "omp_threads_bind": os.environ.get("VLLM_CPU_OMP_THREADS_BIND"),
        "load_avg_1m": os.getloadavg()[0],
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])), flush=True)
