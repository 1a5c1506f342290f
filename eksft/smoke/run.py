"""``--smoke`` of ``eksft train`` and ``eksft rl``, and the parts the pipeline's smoke run shares: the model and size
lines of the checklist, one training run (in this process or through the engine's launch) and the resume check."""

from __future__ import annotations

import os
import shutil
import time
from types import SimpleNamespace

from .checklist import Checklist, SmokeFailed
from .engine import child_environment, describe, engine_of, launcher_for
from .model import build_smoke_model, memory_estimate, parameter_count
from .transform import prepare_folder, rl_smoke, sft_smoke, smoke_folder


def gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def model_lines(ck: Checklist, name: str, built: dict) -> None:
    ck.add(
        "replaced",
        "model",
        f"{name} -> random {built['model_type']}, 2 layers, hidden 64 ({built['source']}; "
        f"{built['parameters'] / 1e6:.2f} M parameters)",
    )
    ck.add("ran" if "own" in built["tokenizer"] else "replaced", "tokenizer", built["tokenizer"])


def size_line(ck: Checklist, name: str, built: dict, values: dict, engine: dict, kind: str) -> None:
    """The real model's parameter count and per-GPU memory estimate, when its config.json is at hand."""
    real = built["real_config"]
    if real is None:
        ck.add(
            "not checked",
            "size estimate",
            f"{name}'s config.json is not at hand (not a local folder, not in the HF cache): no parameter count or "
            "memory estimate; download the model once (or its config.json) and rerun",
        )
        return
    from eksft.losses import SPECS

    params = parameter_count(real)
    processes = engine["processes"] or 8
    sharding = engine["name"] if engine["name"] in ("zero1", "zero2", "zero3", "fsdp") else "none"
    if kind == "rl":
        length = (values.get("max_prompt_length") or 512) + (values.get("max_completion_length") or 256)
    else:
        length = values.get("max_length") or 1024
    spec = SPECS.get(values.get("loss_type", "eksft"))
    est = memory_estimate(
        real,
        params,
        processes=processes,
        sharding=sharding,
        batch=values.get("per_device_train_batch_size") or 8,
        length=length,
        checkpointing=bool(values.get("gradient_checkpointing", True)),
        reference=bool(kind == "train" and spec is not None and spec.needs_reference),
        logits=bool(kind == "rl" or values.get("loss_implementation") == "logits" or (spec and not spec.fused)),
    )
    ck.info["size"] = {"parameters": params, "processes": processes, "sharding": sharding, "per_gpu_gib": est}
    assumed = "" if engine["processes"] else ", assuming 8 GPUs (your launch's --num_processes decides)"
    ck.add(
        "ran",
        "size estimate",
        f"{name}: {params / 1e9:.2f} B parameters; per-GPU memory ~{est['total']} GiB (an estimate: model states "
        f"{est['model_states']}, reference {est['reference']}, activations {est['activations']} GiB; {sharding} over "
        f"{processes} processes{assumed}, batch {values.get('per_device_train_batch_size')} x {length} tokens)",
    )


def train_once(kind: str, values: dict, out: str, launcher: str | None, log=print) -> None:
    """One training run ('train' or 'rl') as the pipeline runs a stage: through ``launcher`` or in this process
    (resuming from the newest complete checkpoint in ``out``)."""
    from eksft.pipeline.run import _train

    try:
        _train(kind, values, out, SimpleNamespace(launcher=launcher), log)
    except RuntimeError as err:  # a launched run failed; its own error is printed above
        raise SmokeFailed(str(err)) from None


def step_losses(out: str) -> dict[int, float]:
    from eksft.jobs.metrics import read_metrics

    return {r["step"]: r["loss"] for r in read_metrics(out) if "loss" in r and "train_runtime" not in r}


def resume_check(ck: Checklist, kind: str, values: dict, run_dir: str, folder: str, launcher, log=print) -> None:
    """Copy ``run_dir``'s checkpoint-1 into a new folder, resume it there, and compare step 2's loss."""
    first = os.path.join(run_dir, "checkpoint-1")
    if not os.path.isdir(first):
        ck.add("failed", "checkpoint + resume", f"no {first} was written")
        return
    ck.add("ran", "checkpoint", f"{', '.join(sorted(n for n in os.listdir(run_dir) if n.startswith('checkpoint')))}")
    resumed = os.path.join(folder, "resumed")
    shutil.copytree(first, os.path.join(resumed, "checkpoint-1"))
    train_once(kind, {**values, "output_dir": resumed}, resumed, launcher, log)
    full, again = step_losses(run_dir), step_losses(resumed)
    if 2 in full and 2 in again and abs(full[2] - again[2]) <= 1e-4 * max(1.0, abs(full[2])):
        ck.add("ran", "resume", f"checkpoint-1 resumed in {resumed}: step-2 loss {again[2]:.5f} = {full[2]:.5f}")
    else:
        ck.add("failed", "resume", f"step-2 loss uninterrupted {full.get(2)} vs resumed {again.get(2)} ({resumed})")


def smoke_job(kind: str, path: str | None, overrides: dict, single_process: bool = False) -> Checklist:
    """``eksft train/rl CONFIG --smoke``: see eksft/smoke/__init__.py."""
    from eksft.config_io import config_from_values, load_yaml

    start = time.time()
    values = {**(load_yaml(path) if path else {}), **overrides}
    command = f"eksft {kind}"
    folder = smoke_folder(values.get("output_dir"), f"{kind}_output")
    prepare_folder(folder)
    ck = Checklist(command, path or "flags", folder)
    name = values.get("model_name_or_path") or "tiny-random-llama"
    engine = engine_of(values)
    n_gpus = gpus()
    launcher, processes = (None, 1) if single_process else launcher_for(engine, folder, n_gpus)
    notes: dict = {}
    data_dir = os.path.join(folder, "data")
    if kind == "train":
        smoke = sft_smoke(values, os.path.join(folder, "model"), data_dir, bool(n_gpus), notes)
    else:
        smoke = rl_smoke(values, os.path.join(folder, "model"), data_dir, bool(n_gpus), processes, notes)
    run_dir = os.path.join(folder, "run")
    smoke["output_dir"] = run_dir
    if single_process and smoke.get("deepspeed"):
        smoke["deepspeed"] = None
    from eksft.rl import RLConfig
    from eksft.train import EKSFTConfig

    cls = EKSFTConfig if kind == "train" else RLConfig
    # every field, and the data, checked here before a model is built or a process launched
    check = {**smoke, "deepspeed": None, "output_dir": os.path.join(folder, "check")}
    cfg = config_from_values(check, cls, where=path or "flags", command=command)
    ck.add("ran", "config", f"every field parsed as {cls.__name__} ({len(values)} set in the file and flags)")
    if kind == "train":
        from eksft.train.run import load_data

        train_data, _ = load_data(cfg)
        count = len(train_data)
    else:
        from eksft.rl.data import load_prompts

        count = len(load_prompts(cfg))
    for key, note in notes.items():
        if key not in ("sft", "rl"):
            ck.add("ran" if note.startswith("first") else "replaced", f"data: {key}", f"{note} ({count} records)")
    replaced = notes["sft" if kind == "train" else "rl"]
    ck.add("replaced", "sizes and steps", "; ".join([*replaced, "max_steps -> 2, a checkpoint every step"]))
    built = build_smoke_model(name, os.path.join(folder, "model"))
    model_lines(ck, name, built)
    engine_text = describe(engine)
    if single_process and engine["name"]:
        ck.add("replaced", "engine", f"{engine_text} -> one process (the engine runs in `{command} --smoke`)")
    else:
        where = f"{processes} {'GPU' if n_gpus else 'CPU'} process(es)" + ("" if n_gpus else " over gloo")
        ck.add("ran", "engine", f"{engine_text} on {where}" if engine["name"] else engine_text)
    with child_environment():
        train_once(kind, smoke, run_dir, launcher)
        losses = step_losses(run_dir)
        ok = sorted(losses) == [1, 2] and all(v == v for v in losses.values())
        detail = ", ".join(f"step {s}: loss {v:.4f}" for s, v in sorted(losses.items()))
        ck.add("ran" if ok else "failed", "training", f"2 optimiser steps in {run_dir} ({detail or 'no steps logged'})")
        if kind == "rl":
            rl_lines(ck, run_dir)
            ck.add("not checked", "resume", "RL resume is covered by the test suite, not the smoke run")
        else:
            resume_check(ck, kind, smoke, run_dir, folder, launcher)
    size_line(ck, name, built, values, engine, kind)
    print(ck.finish(bool(n_gpus), time.time() - start), flush=True)
    return ck


def rl_lines(ck: Checklist, run_dir: str) -> None:
    """Dynamic sampling's own metrics, from the RL run's metrics.jsonl."""
    from eksft.jobs.metrics import read_metrics
    from eksft.rl.dynamic_sampling import GENERATION_BATCHES, METRIC_PREFIX

    rows = [r for r in read_metrics(run_dir) if GENERATION_BATCHES in r]
    if not rows:
        ck.add("failed", "dynamic sampling", f"no {METRIC_PREFIX}* metrics in {run_dir}/metrics.jsonl")
        return
    batches = [int(r[GENERATION_BATCHES]) for r in rows]
    ck.add("ran", "dynamic sampling", f"generation batches per step {batches} (refills where > 1)")


def check_ok(ck: Checklist) -> int:
    if not ck.ok:
        failed = [i["item"] for i in ck.items if i["status"] == "failed"]
        raise SmokeFailed(f"smoke run failed at: {', '.join(failed)} (checklist above)")
    return 0
