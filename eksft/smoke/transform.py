"""The smoke transform of one training config (``eksft train`` / ``eksft rl`` / a pipeline stage): every field is
kept except the ones below, and each replacement is recorded in the checklist.

- model (and ``ref_model``) -> the tiny random model of the same architecture (model.py);
- data -> the configured file's first records, or a stand-in with the configured columns (data.py);
- lengths capped (:data:`MAX_LENGTH`, :data:`COMPLETION_LENGTH`), 2 optimiser steps, a checkpoint every step;
- RL: a rollout batch of 2 prompts x at most 4 completions, at most 2 generation batches per rollout batch
  (dynamic sampling stays on), vLLM replaced by HF generate where vLLM cannot run;
- on a CPU: bf16 -> fp32 and ``use_cpu``; the engine (``deepspeed:``, FSDP, a launcher) stays and runs as
  :data:`CPU_PROCESSES` processes through eksft.cpu_launch (engine.py).
"""

from __future__ import annotations

import os

from .data import available, standin_file

MAX_LENGTH = 256  # tokens of an SFT sequence, of an RL prompt + completion
COMPLETION_LENGTH = 64  # RL completion tokens
STEPS = 2
SFT_RECORDS = 32
RL_RECORDS = 8
CALIBRATION_RECORDS = 8  # SED-SFT's calibration records


def cap(values: dict, key: str, limit, note: list) -> None:
    if values.get(key) is not None and values[key] > limit:
        note.append(f"{key} {values[key]} -> {limit}")
        values[key] = limit


def common(values: dict, model_dir: str, gpu: bool, note: list) -> dict:
    """Fields both training configs share: model, steps and checkpoints, precision, logging."""
    v = dict(values)
    v["model_name_or_path"] = model_dir
    if v.get("ref_model"):
        note.append(f"ref_model {v['ref_model']} -> the smoke model")
        v["ref_model"] = model_dir
    v.update(max_steps=STEPS, save_strategy="steps", save_steps=1, logging_steps=1, disable_tqdm=True)
    if v.get("save_total_limit") is not None and v["save_total_limit"] < STEPS:
        v["save_total_limit"] = STEPS
    v.pop("resume_from_checkpoint", None)
    v.pop("push_to_hub", None)
    if not gpu:
        if v.get("bf16") or v.get("fp16") or v.get("dtype") not in (None, "auto", "float32"):
            note.append(f"bf16 {v.get('bf16')} / dtype {v.get('dtype')} -> fp32 (no bf16 kernels on this CPU)")
        v.update(bf16=False, fp16=False, dtype="float32", use_cpu=True, dataloader_pin_memory=False)
        v.pop("tf32", None)
    return v


def data_source(values: dict, key: str, folder: str, n: int, notes: dict) -> None:
    """Keep ``values[key]`` when the smoke run can read it, else write a stand-in (said in ``notes[key]``)."""
    source = values.get(key)
    if not source:
        return
    if available(source):
        notes[key] = f"first records of {source}"
        return
    values[key] = standin_file(source, folder, n, values)
    notes[key] = (
        f"{source} is missing (or a hub dataset: nothing is downloaded): stand-in {values[key]} with its columns"
    )


def sft_smoke(values: dict, model_dir: str, data_dir: str | None, gpu: bool, notes: dict) -> dict:
    """An ``EKSFTConfig`` mapping -> its smoke version. ``data_dir`` None: the data fields are left to the caller
    (the pipeline's ``data`` section)."""
    note: list[str] = []
    v = common(values, model_dir, gpu, note)
    cap(v, "max_length", MAX_LENGTH, note)
    cap(v, "sed_calibration_samples", CALIBRATION_RECORDS, note)
    if data_dir is not None:
        for key in ("train_file", "eval_file", "sed_calibration_data"):
            data_source(v, key, data_dir, SFT_RECORDS, notes)
        if v.get("train_file"):
            v["max_samples"] = min(v.get("max_samples") or SFT_RECORDS, SFT_RECORDS)
    notes["sft"] = note
    return v


def rl_smoke(values: dict, model_dir: str, data_dir: str | None, gpu: bool, processes: int, notes: dict) -> dict:
    """An ``RLConfig`` mapping -> its smoke version (see the module docstring)."""
    from eksft.eval.sampling import vllm_available

    note: list[str] = []
    v = common(values, model_dir, gpu, note)
    old_completion = v.get("max_completion_length") or 256
    cap(v, "max_completion_length", COMPLETION_LENGTH, note)
    completion = v.get("max_completion_length") or COMPLETION_LENGTH
    if v.get("overlong_buffer_len"):  # DAPO's proportion of the capped length
        v["overlong_buffer_len"] = max(1, v["overlong_buffer_len"] * completion // old_completion)
    cap(v, "max_prompt_length", MAX_LENGTH - completion, note)
    cap(v, "vllm_max_model_length", MAX_LENGTH, note)
    generations = min(v.get("num_generations") or 8, 4)
    per_device = v.get("per_device_train_batch_size") or 8
    if generations != v.get("num_generations"):
        note.append(f"num_generations {v.get('num_generations')} -> {generations}")
    # one rollout batch of 2 prompts per optimiser step, spread over the processes
    batch = 2 * generations
    if per_device * processes > batch or batch % (per_device * processes):
        per_device = max(1, batch // processes)
    accumulation = batch // (per_device * processes)
    note.append(
        f"rollout batch {v.get('prompts_per_generation')} prompts x {v.get('num_generations')} -> 2 x {generations}"
        f" (per_device_train_batch_size {per_device}, gradient_accumulation_steps "
        f"{v.get('gradient_accumulation_steps')} -> {accumulation})"
    )
    v.update(
        num_generations=generations,
        prompts_per_generation=2,
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=accumulation,
    )
    v.pop("generation_batch_size", None)
    v.pop("steps_per_generation", None)
    cap(v, "max_generation_batches", 2, note)
    if v.get("use_vllm") and not vllm_available():
        note.append("use_vllm true -> false (vLLM cannot run here: HF generate)")
        v["use_vllm"] = False
    if data_dir is not None and v.get("train_file"):
        if not available(v["train_file"]) and v.get("skip_samples"):
            note.append(f"skip_samples {v['skip_samples']} -> 0 (stand-in data)")
            v["skip_samples"] = 0
        data_source(v, "train_file", data_dir, RL_RECORDS, notes)
        v["max_samples"] = min(v.get("max_samples") or RL_RECORDS, RL_RECORDS)
    notes["rl"] = note
    return v


MARKER = ".eksft_smoke"  # written first into every smoke folder


def prepare_folder(folder: str) -> None:
    """The smoke folder starts empty: a folder left by an earlier smoke run (its :data:`MARKER`, even one stopped by
    an error) is cleared; any other non-empty folder is refused (it may hold a real run)."""
    import shutil

    if os.path.isdir(folder) and os.listdir(folder):
        if not os.path.exists(os.path.join(folder, MARKER)):
            raise ValueError(
                f"smoke folder {folder!r} exists and holds files of something other than a smoke run; "
                "move it away or pass --output_dir to choose another smoke folder."
            )
        shutil.rmtree(folder)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, MARKER), "w", encoding="utf-8") as f:
        f.write("a folder of `--smoke`: the next smoke run into it clears it\n")


def smoke_folder(output_dir: str | None, default: str) -> str:
    """``OUTPUT_DIR-smoke``: never the configured output folder itself."""
    return f"{os.path.normpath(output_dir or default)}-smoke"
