"""The output folder of a training run: what counts as a run in it, when a new run may write there, which checkpoints
are complete (resumable) and which hold finite weights. Shared by ``eksft train``, ``eksft rl`` and the stages of
``eksft pipeline``; no heavy import at module level.

Rules (docs/training.md, "Output folders, resume and divergence"):

- A folder *holds a run* when it has model weights, ``checkpoint-*`` folders, ``metrics.jsonl`` or
  ``trainer_state.json``. A new run refuses such a folder (before any model loads) unless it resumes
  (``resume_from_checkpoint``) or ``overwrite_output_dir`` is true. Overwriting removes those files when training
  starts (:class:`RemovePreviousRun`, after the data and models loaded, so a typo does not cost the old run), and no
  checkpoint of the old run is left beside the new ones (``latest`` would pick it).
- A checkpoint is *complete* when ``trainer_state.json`` (written last by transformers) parses and the model
  weights it needs are present. ``resume_from_checkpoint: latest`` (or ``true``) is the newest complete one.
- After a divergence, the checkpoint to name is the newest complete one whose weights are all finite, checked by
  reading them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "adapter_model.safetensors",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "adapter_model.bin",
)
RUN_FILES = ("metrics.jsonl", "trainer_state.json", *WEIGHT_FILES)
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
#: values of resume_from_checkpoint that mean "the newest complete checkpoint of output_dir" / "do not resume"
LATEST = ("latest", "true", "yes", "1")
NO_RESUME = ("", "false", "no", "0", "none", "null")


def checkpoints(output_dir: str) -> list[str]:
    """``checkpoint-N`` folders of ``output_dir``, newest (highest N) first."""
    if not os.path.isdir(output_dir):
        return []
    found = [
        (int(m.group(1)), name)
        for name in os.listdir(output_dir)
        if (m := CHECKPOINT.match(name)) and os.path.isdir(os.path.join(output_dir, name))
    ]
    return [os.path.join(output_dir, name) for _, name in sorted(found, reverse=True)]


def run_contents(output_dir: str) -> list[str]:
    """The names in ``output_dir`` that make it hold a run (empty when it does not)."""
    if not os.path.isdir(output_dir):
        return []
    names = sorted(os.listdir(output_dir))
    files = [n for n in names if n in RUN_FILES or re.match(r"^model-\d+-of-\d+\.safetensors$", n)]
    return files + [os.path.basename(c) for c in reversed(checkpoints(output_dir))]


def _summary(contents: list[str]) -> str:
    ckpts = [c for c in contents if c.startswith("checkpoint-")]
    files = [c for c in contents if not c.startswith("checkpoint-")]
    if len(ckpts) > 3:
        ckpts = [ckpts[0], "...", ckpts[-1]] + [f"({len(ckpts)} checkpoints)"]
    return ", ".join(files + ckpts)


def incomplete_reason(checkpoint: str) -> str | None:
    """Why ``checkpoint`` cannot be resumed from (a crash while it was written), or None when it is complete."""
    if not os.path.isdir(checkpoint):
        return "it does not exist"
    state = os.path.join(checkpoint, "trainer_state.json")
    if not os.path.isfile(state):
        return "it has no trainer_state.json (written last, so the save was cut short)"
    try:
        with open(state, encoding="utf-8") as f:
            json.load(f)
    except (ValueError, UnicodeDecodeError):
        return "its trainer_state.json is cut short"
    names = os.listdir(checkpoint)
    if not any(
        n in WEIGHT_FILES or n.endswith(".safetensors") or n.startswith(("global_step", "pytorch_model_fsdp"))
        for n in names
    ):
        return "it has no model weights"
    index = os.path.join(checkpoint, "model.safetensors.index.json")
    if os.path.isfile(index):
        try:
            with open(index, encoding="utf-8") as f:
                shards = set(json.load(f)["weight_map"].values())
        except (ValueError, KeyError):
            return "its model.safetensors.index.json is cut short"
        missing = sorted(s for s in shards if not os.path.isfile(os.path.join(checkpoint, s)))
        if missing:
            return f"weight shard(s) {missing} are missing"
    return None


def latest_complete(output_dir: str) -> str | None:
    return next((c for c in checkpoints(output_dir) if incomplete_reason(c) is None), None)


def resuming(value) -> bool:
    """Whether a ``resume_from_checkpoint`` value asks to resume."""
    if value is None or value is False:
        return False
    return value is True or str(value).strip().lower() not in NO_RESUME


def resolve_resume(value, output_dir: str, field: str = "resume_from_checkpoint") -> str | None:
    """The checkpoint folder to resume from: None (do not resume), the newest complete checkpoint of ``output_dir``
    (``latest`` / ``true``) or the folder named, which must be complete. Errors name the folder and a complete one."""
    if not resuming(value):
        return None
    incomplete = [c for c in reversed(checkpoints(output_dir)) if incomplete_reason(c) is not None]
    if value is True or str(value).strip().lower() in LATEST:
        found = latest_complete(output_dir)
        if found:
            return found
        what = (
            f"only incomplete checkpoints ({', '.join(os.path.basename(c) for c in incomplete)}: the run was "
            "stopped while writing them)"
            if incomplete
            else "no checkpoint"
        )
        raise ValueError(
            f"{field}={value}: output_dir {output_dir!r} holds {what}, so there is nothing to resume; "
            "drop --resume_from_checkpoint to start a new run (with --overwrite_output_dir true if the "
            "folder holds an earlier run)."
        )
    path = str(value)
    reason = incomplete_reason(path)
    if reason is None:
        return path
    found = latest_complete(output_dir) or latest_complete(os.path.dirname(os.path.abspath(path)))
    use = (
        f"resume from the newest complete one instead: --resume_from_checkpoint {found} (or `latest`)"
        if found
        else "no complete checkpoint exists there; drop --resume_from_checkpoint to start a new run"
    )
    kind = "does not exist" if reason == "it does not exist" else f"is incomplete ({reason})"
    raise ValueError(f"{field}: checkpoint {path!r} {kind}; {use}.")


def check_output_dir(output_dir: str | None, *, resume, overwrite: bool, config: str = "EKSFTConfig") -> None:
    """Refuse to start a new run in a folder that holds one, unless resuming or overwriting (module docstring);
    check that the folder can be written. Call before loading models; nothing is removed here."""
    if not output_dir:
        raise ValueError(f"{config}.output_dir is not set: give the folder for checkpoints, metrics and the model.")
    contents = run_contents(output_dir)
    if contents and not resuming(resume):
        if not overwrite:
            raise ValueError(
                f"output_dir {output_dir!r} already holds a run ({_summary(contents)}); a new run would overwrite "
                "it. Resume it with --resume_from_checkpoint latest, or replace it with --overwrite_output_dir true "
                "(or choose another output_dir)."
            )
    check_writable(output_dir, f"{config}.output_dir")


def remove_run(output_dir: str, contents: list[str] | None = None) -> None:
    """Delete the files of a previous run (only those run_contents lists, and the interval files of checkpoints)."""
    for name in contents if contents is not None else run_contents(output_dir):
        path = os.path.join(output_dir, name)
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.exists(path):
            os.remove(path)


def check_writable(path: str, field: str) -> None:
    """``path`` (or, when it does not exist yet, its nearest existing parent) accepts a new file."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise ValueError(f"{field}={path!r}: {probe!r} is a file, not a folder; choose a folder path.")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".eksft-write-test-", dir=probe)
        os.close(fd)
        os.remove(tmp)
    except OSError as e:
        raise ValueError(
            f"{field}={path!r}: cannot write to {probe!r} ({e.strerror}); make it writable or choose "
            "another output_dir."
        ) from None


def weights_finite(checkpoint: str) -> bool:
    """Whether every floating-point tensor saved in ``checkpoint`` is finite (read one tensor at a time)."""
    import torch

    files = sorted(
        n
        for n in os.listdir(checkpoint)
        if n.endswith((".safetensors", ".bin"))
        and "optimizer" not in n
        and not n.startswith(("training_args", "rng_state", "scheduler"))
    )
    if not files:
        return False
    for name in files:
        path = os.path.join(checkpoint, name)
        if name.endswith(".safetensors"):
            from safetensors import safe_open

            with safe_open(path, framework="pt") as f:
                for key in f.keys():
                    t = f.get_tensor(key)
                    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                        return False
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if any(
                t.is_floating_point() and not bool(torch.isfinite(t).all())
                for t in state.values()
                if isinstance(t, torch.Tensor)
            ):
                return False
    return True


def last_finite_checkpoint(output_dir: str) -> str | None:
    """The newest complete checkpoint of ``output_dir`` whose saved weights are all finite (checked)."""
    for c in checkpoints(output_dir):
        if incomplete_reason(c) is None and weights_finite(c):
            return c
    return None


def with_previous_run_remover(cfg, resume, callbacks=None) -> list:
    """``callbacks`` plus :func:`previous_run_remover` when ``cfg.overwrite_output_dir`` starts a new run (not when
    resuming): the trainers of ``eksft train`` and ``eksft rl`` take this list."""
    callbacks = list(callbacks or [])
    if getattr(cfg, "overwrite_output_dir", False) and not resuming(resume):
        callbacks.append(previous_run_remover(cfg.output_dir))
    return callbacks


def previous_run_remover(output_dir: str):
    """A ``TrainerCallback`` that removes the files of the run already in ``output_dir`` when a new run (step 0)
    starts training (``overwrite_output_dir``), on the main process; a resumed run keeps them."""
    from transformers import TrainerCallback

    class RemovePreviousRun(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if state.global_step == 0 and state.is_world_process_zero:
                remove_run(output_dir)

    return RemovePreviousRun()
