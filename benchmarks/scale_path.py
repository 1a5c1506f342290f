"""The scale path of ``gpu_check.py`` (issue 29): what the CPU suite cannot run, each as a subprocess of the
``eksft`` CLI with a timeout, recorded in the check's JSON under ``scale_path``:

- ``pipeline_smoke``: ``eksft pipeline configs/paper/pipeline_qwen3_4b.yaml --smoke --methods eksft`` on the GPU:
  bf16, the real kernels, DeepSpeed ZeRO-3 over NCCL (one process per GPU, at most 2), vLLM evaluation and rollouts
  where vLLM is installed; its ``smoke.json`` checklist is copied into the record;
- ``eval_vllm``: ``eksft eval`` with ``--backend vllm`` on a small random Qwen3 saved to a folder (head size 64);
- ``rl_vllm``: 2 steps of ``eksft rl`` with vLLM rollouts (colocate) and dynamic sampling on that model.

Each record: ``status`` ok / failed / timeout / skipped (with ``reason``: no CUDA device, vLLM not importable, the
budget spent), ``seconds``, the command, and the last lines of its output when it did not pass. This module imports
only the standard library: the CLI runs in the subprocesses (gpu_check itself never imports TRL).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CAPS = {"pipeline_smoke": 300, "eval_vllm": 180, "rl_vllm": 240}  # seconds each may take at most


def _run(name: str, cmd: list[str], budget) -> dict:
    left = budget.seconds - budget.elapsed()
    if left < 30:
        return {"status": "skipped", "reason": "budget spent (--budget-s)", "command": cmd}
    timeout = max(60, min(CAPS[name], left + 60))
    start = time.time()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        tail = ((e.stdout or b"") if isinstance(e.stdout, bytes) else (e.stdout or "").encode())[-3000:]
        return {"status": "timeout", "seconds": round(time.time() - start, 1), "command": cmd, "tail": tail.decode()}
    record = {"status": "ok" if proc.returncode == 0 else "failed", "seconds": round(time.time() - start, 1)}
    record.update(command=cmd, returncode=proc.returncode)
    if proc.returncode != 0:
        record["tail"] = (proc.stdout[-2000:] + "\n" + proc.stderr[-4000:]).strip()
    return record


def save_small_model(folder: Path) -> str:
    """A random 2-layer Qwen3 (hidden 256, head size 64: vLLM's attention backends serve it) with the built-in
    character tokenizer, saved to ``folder``."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from eksft.models.tiny import tiny_tokenizer

    tok = tiny_tokenizer()
    cfg = Qwen3Config(
        vocab_size=len(tok),
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=2048,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
    )
    torch.manual_seed(0)
    Qwen3ForCausalLM(cfg).to(torch.bfloat16).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


RL = {
    "train_file": "synthetic:arithmetic-easy",
    "max_samples": 64,
    "max_steps": 2,
    "num_generations": 4,
    "prompts_per_generation": 4,
    "per_device_train_batch_size": 4,
    "gradient_accumulation_steps": 4,
    "max_completion_length": 64,
    "overlong_buffer_len": 16,
    "max_generation_batches": 3,
    "dynamic_sampling": True,
    "use_vllm": True,
    "vllm_mode": "colocate",
    "vllm_gpu_memory_utilization": 0.3,
    "vllm_max_model_length": 512,
    "learning_rate": 1e-5,
    "logging_steps": 1,
    "save_strategy": "no",
    "report_to": [],
    "bf16": True,
}


def scale_path(work: Path, budget, skip: str | None = None) -> dict:
    """Run the three checks (see the module docstring) into ``work``; a record per check. ``skip``: why not to run
    them at all (recorded as each one's reason)."""
    import torch

    out: dict = {}
    reason = skip or (None if torch.cuda.is_available() else "no CUDA device")
    if reason is None and importlib.util.find_spec("trl") is None:
        reason = "trl is not importable: the scale path runs the eksft CLI (pip install -e '.[dev,vllm]')"
    vllm = importlib.util.find_spec("vllm") is not None
    out["vllm_importable"] = vllm
    if reason:
        return {**out, **{name: {"status": "skipped", "reason": reason} for name in CAPS}}
    work.mkdir(parents=True, exist_ok=True)
    cli = [sys.executable, "-m", "eksft.cli"]
    smoke = work / "pipeline_smoke"
    config = str(ROOT / "configs" / "paper" / "pipeline_qwen3_4b.yaml")
    record = _run(
        "pipeline_smoke",
        [*cli, "pipeline", config, "--smoke", "--output_dir", str(smoke), "--methods", "eksft"],
        budget,
    )
    if (smoke / "smoke.json").is_file():
        record["checklist"] = json.loads((smoke / "smoke.json").read_text())
    out["pipeline_smoke"] = record
    if not vllm:
        no = {"status": "skipped", "reason": "vllm is not importable (pip install 'eksft[vllm]')"}
        return {**out, "eval_vllm": dict(no), "rl_vllm": dict(no)}
    model = save_small_model(work / "small_qwen3")
    out["eval_vllm"] = _run(
        "eval_vllm",
        [*cli, "eval", model, "--benchmark", "arithmetic-easy", "--limit", "16", "--n", "4", "--k", "1,4"]
        + ["--max-new-tokens", "64", "--backend", "vllm", "--output-dir", str(work / "eval_vllm")],
        budget,
    )
    results = work / "eval_vllm" / "results.json"
    if results.is_file():
        out["eval_vllm"]["results"] = json.loads(results.read_text())
    rl_config = work / "rl_vllm.json"
    rl_config.write_text(json.dumps({**RL, "model_name_or_path": model, "output_dir": str(work / "rl_vllm")}))
    out["rl_vllm"] = _run("rl_vllm", [*cli, "rl", str(rl_config)], budget)
    metrics = work / "rl_vllm" / "metrics.jsonl"
    if metrics.is_file():
        from eksft.rl.dynamic_sampling import GENERATION_BATCHES

        rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        out["rl_vllm"]["steps"] = [r for r in rows if GENERATION_BATCHES in r]
    return out
