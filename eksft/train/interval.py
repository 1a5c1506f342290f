"""Resuming mid-interval: each checkpoint also stores the unlogged part of the current logging interval
(``eksft_interval.json``: the summed loss and metric sums since the last log), and a resumed run puts it back, so the
first line logged after a resume covers the same steps as without the stop.
"""

from __future__ import annotations

import json
import os

import torch
from transformers import TrainerCallback

INTERVAL_FILE = "eksft_interval.json"


def write_interval(trainer, folder: str) -> None:
    """Store :func:`interval_state` in checkpoint ``folder`` (process 0 writes the sums of all processes)."""
    interval = interval_state(trainer)
    if trainer.args.should_save:
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, INTERVAL_FILE), "w", encoding="utf-8") as f:
            json.dump(interval, f)


def interval_state(trainer) -> dict:
    """The loss and metric sums since the last log, summed over processes (process 0 restores them all)."""
    acc = trainer._loss_metrics["train"]
    keys = sorted(acc.sums)
    tr_loss = getattr(trainer, "_tr_loss", None)  # set by transformers' training loop
    values = [
        float(tr_loss) if tr_loss is not None else 0.0,
        *(acc.sums[k] for k in keys),
        acc.weight,
        float(acc.count),
    ]
    if trainer.accelerator.num_processes > 1:
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=trainer.args.device)
        dist.all_reduce(t)
        values = t.tolist()
    return {
        "global_step": trainer.state.global_step,
        "last_logged": getattr(trainer, "_globalstep_last_logged", trainer.state.global_step),
        "processes": trainer.accelerator.num_processes,
        "tr_loss": values[0],
        "sums": dict(zip(keys, values[1:-2])),
        "weight": values[-2],
        "count": int(values[-1]),
    }


class RestoreInterval(TrainerCallback):
    """On resume, put the checkpoint's unlogged interval (``INTERVAL_FILE``) back into the trainer, so the first log
    after the resume covers the same steps as an uninterrupted run. Process 0 takes the sums of all processes."""

    def __init__(self, trainer):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        t = self.trainer
        path = os.path.join(t._resumed_from, INTERVAL_FILE) if t._resumed_from else None
        if not path or not os.path.isfile(path):
            return
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        if saved.get("global_step") != state.global_step:
            return
        t._globalstep_last_logged = saved["last_logged"]
        if not state.is_world_process_zero:
            return
        t._tr_loss += saved["tr_loss"]
        acc = t._loss_metrics["train"]
        for k, v in saved["sums"].items():
            acc.sums[k] += v
        acc.weight += saved["weight"]
        acc.count += saved["count"]
