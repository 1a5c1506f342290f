"""What the commands ``eksft train`` and ``eksft rl`` do around their job (``eksft.train.train``,
``eksft.rl.train_rl``): the output-folder rule before any model loads, a clean shut-down of the process group, one
"done" line."""

from __future__ import annotations

from .output_dir import check_output_dir, resolve_resume


def run_job(cfg, job) -> int:
    """What ``eksft train`` and ``eksft rl`` do around ``job(cfg) -> trainer``: before any model loads, resolve
    ``resume_from_checkpoint`` and apply the output-folder rule (a folder holding a run needs resume or
    ``overwrite_output_dir``; output_dir.py); shut the process group down cleanly at exit (under ``accelerate
    launch``); one "done" line, from the main process, once every process has finished."""
    import atexit

    cfg.resume_from_checkpoint = resolve_resume(cfg.resume_from_checkpoint, cfg.output_dir)
    check_output_dir(
        cfg.output_dir,
        resume=cfg.resume_from_checkpoint,
        overwrite=getattr(cfg, "overwrite_output_dir", False),
        config=type(cfg).__name__,
    )
    atexit.register(shut_down_process_group)
    trainer = job(cfg)  # TrainingDiverged: one line from eksft.cli, exit code 1
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():  # one line, not one per process
        print(f"done: model and metrics.jsonl in {cfg.output_dir} ({trainer.state.global_step} steps)", flush=True)
    return 0


def shut_down_process_group() -> None:
    """Destroy the torch.distributed process group, if one exists: left to interpreter exit, gloo's threads can
    abort the process ("terminate called without an active exception") after the run has finished. Registered with
    ``atexit`` by ``eksft train`` / ``eksft rl``; idempotent."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
