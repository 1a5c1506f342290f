"""Training one method of the demo: its ``EKSFTConfig`` (the demo's settings, then the method's overrides), a
marker that lets a rerun skip a finished model (and refuses one trained with other settings), and a compact
per-step log line. Used by ``run.run_seed`` for every method and by ``selftrace`` for the warm start."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .config import DemoConfig


def loss_fields(cfg: DemoConfig, method) -> dict:
    """The EKSFTConfig loss fields of one method: the demo's rho / lambdas, then the method's own overrides."""
    return {"rho": cfg.rho, "lambda_entropy": cfg.lambda_entropy, "lambda_kl": cfg.lambda_kl, **method.fields}


def train_method(
    cfg: DemoConfig,
    base: str,
    method,
    seed: int,
    run_dir: Path,
    train_file: Path,
    log,
    steps: int | None = None,
    train_size: int | None = None,
) -> dict:
    """Train one method (an :class:`eksft.methods.Method`; skipped when ``demo_train.json`` says it finished) from
    ``base`` on ``train_file`` (``train_size`` records, default ``cfg.train_size``) for the method's own length, else
    ``steps``, else the demo's; return its record."""
    marker = run_dir / "demo_train.json"
    fields = loss_fields(cfg, method)
    steps = fields.pop("max_steps", steps or cfg.lengths[0])  # a method's own length ([max_steps=N], --steps 20,80)
    train_size = train_size or cfg.train_size
    settings = {
        "model": base,
        "task": cfg.task,
        "train_size": train_size,
        "steps": steps,
        "batch_size": cfg.batch_size,
        "learning_rate": cfg.learning_rate,
        **fields,
    }
    if marker.exists():
        record = json.loads(marker.read_text())
        old = record.get("settings", {})
        if old != settings:  # a rerun must not report models trained with other settings under this run's header
            diff = sorted(k for k in settings if old.get(k) != settings[k])
            raise ValueError(
                f"{run_dir} holds a {method.label} model trained with other settings ({diff}: "
                f"{[old.get(k) for k in diff]}); use a new DemoConfig.output_dir, or delete that folder"
            )
        log(f"[demo] {method.label} seed {seed}: already trained, skipping ({run_dir})")
        return {**record, "resumed": True}  # trained by an earlier invocation: not in this one's wall time
    from eksft.train.config import EKSFTConfig
    from eksft.train.run import train

    tcfg = EKSFTConfig(
        model_name_or_path=base,
        train_file=str(train_file),
        output_dir=str(run_dir),
        max_steps=steps,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=1,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=0.1,
        weight_decay=0.0,
        adam_beta2=0.95,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=seed,
        data_seed=seed,
        max_length=256,
        gradient_checkpointing=False,
        dtype="float32",
        dataloader_pin_memory=False,
        sed_calibration_samples=min(64, train_size),
        psft_updates_per_batch=min(8, steps),
        **fields,
    )
    start = time.time()
    train(tcfg, progress=compact_log(method.label, log))
    record = {
        "method": method.label,
        "loss_type": method.loss_type,
        "seed": seed,
        "run_dir": str(run_dir),
        "train_seconds": time.time() - start,
        "settings": settings,
    }
    marker.write_text(json.dumps(record, indent=1) + "\n")
    return record


def compact_log(label: str, log):
    """A transformers callback printing one short line per logged step (the full dict stays in metrics.jsonl)."""
    from transformers import TrainerCallback

    class CompactLog(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if "loss" not in logs or not state.is_world_process_zero:
                return
            parts = [f"loss {logs['loss']:.3f}"]
            for key, name, fmt in (
                ("ce", "CE", ".3f"),
                ("masked_fraction", "masked", ".2f"),
                ("entropy_mean", "entropy", ".3f"),
                ("kl_mean", "KL", ".3f"),
            ):
                if isinstance(logs.get(key), (int, float)):
                    parts.append(f"{name} {logs[key]:{fmt}}")
            log(f"[train] {label} step {state.global_step}/{state.max_steps}: " + ", ".join(parts))

    return CompactLog()
