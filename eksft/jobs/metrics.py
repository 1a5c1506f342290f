"""Loss metrics over a logging interval, and ``metrics.jsonl`` in the output folder.

Every ``LossResult.metrics`` value is a mean over its micro-batch's ``num_targets`` valid targets, so the interval's
value is the ``num_targets``-weighted mean over its micro-batches (and over processes): averaging micro-batch means
with equal weights would over-weight short batches (a known trap of custom losses). ``num_targets`` itself is summed.
The loss functions' own ``loss`` metric is dropped: transformers' ``loss`` (the optimised objective, as scaled for
the step) is the one logged.

``metrics.jsonl``: one JSON object per ``log`` call, ``{"step": global_step, ...}`` with the metric names exactly as
the loss functions return them plus ``loss``, ``learning_rate``, ``epoch`` (train) or ``eval_*`` (evaluation). The
last line of a finished run is transformers' summary (``train_runtime``, ``train_loss`` …). ``eksft masks`` reads it.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import defaultdict

import torch
import torch.distributed as dist
from transformers import TrainerCallback

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
SUMMED = ("num_targets",)
DROPPED = ("loss",)


class MetricAccumulator:
    def __init__(self):
        self.sums: dict[str, float] = defaultdict(float)
        self.weight = 0.0
        self.count = 0

    def add(self, metrics: dict[str, float]) -> None:
        w = float(metrics.get("num_targets", 1.0))
        for k, v in metrics.items():
            if k in DROPPED:
                continue
            self.sums[k] += float(v) if k in SUMMED else w * float(v)
        self.weight += w
        self.count += 1

    def summary(self) -> dict[str, float]:
        """Weighted means over the interval, reduced over processes when a process group exists."""
        if not self.count:
            return {}
        keys = sorted(self.sums)
        values = [self.sums[k] for k in keys] + [self.weight]
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            t = torch.tensor(values, dtype=torch.float64, device=_device())
            dist.all_reduce(t)
            values = t.tolist()
        weight = values[-1]
        return {k: (v if k in SUMMED else (v / weight if weight > 0 else 0.0)) for k, v in zip(keys, values[:-1])}

    def clear(self) -> None:
        self.sums.clear()
        self.weight = 0.0
        self.count = 0


def _device():
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def _plain(v):
    if isinstance(v, torch.Tensor):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # strict JSON has no NaN/inf
    return v


class MetricsJsonlCallback(TrainerCallback):
    """Appends every log to ``OUTPUT_DIR/metrics.jsonl`` (main process only). Resuming appends; lines after the
    resumed step (and the summary line of the stopped run) are dropped first so the file reads as one trajectory.
    A last line cut short by a crash is dropped too."""

    def __init__(self, output_dir: str):
        self.path = os.path.join(output_dir, METRICS_FILE)

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero or not os.path.exists(self.path):
            return
        keep = []
        if state.global_step > 0:
            for record in _records(self.path):
                if record.get("step", 0) <= state.global_step and "train_runtime" not in record:
                    keep.append(json.dumps(record) + "\n")
        with open(self.path, "w", encoding="utf-8") as f:
            f.writelines(keep)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        record = {"step": state.global_step, **{k: _plain(v) for k, v in logs.items()}}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def _records(path: str) -> list[dict]:
    """The JSON lines of ``path``; a last line cut short (a crash while appending) is skipped, any other bad line is
    an error naming the file and the line."""
    from eksft.text_files import jsonl_objects

    def torn(lineno: int) -> None:  # the step it logged is logged again after the resume
        logger.warning("%s line %d is cut short (the run stopped while writing it); skipped.", path, lineno)

    with open(path, encoding="utf-8", errors="replace") as f:
        return [obj for _, obj in jsonl_objects(f.read(), path, on_torn_last=torn)]


def read_metrics(output_dir: str) -> list[dict]:
    """Every record of ``OUTPUT_DIR/metrics.jsonl`` (a torn last line is skipped)."""
    return _records(os.path.join(output_dir, METRICS_FILE))
