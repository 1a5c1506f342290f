"""``metrics.jsonl`` in the output folder (how the metrics of an interval are summed: ``step_log.MetricAccumulator``).

``metrics.jsonl``: one JSON object per ``log`` call, ``{"step": global_step, ...}`` with the metric names exactly as
the loss functions return them plus ``loss``, ``learning_rate``, ``epoch`` (train) or ``eval_*`` (evaluation). The
last line of a finished run is transformers' summary (``train_runtime``, ``train_loss`` …). ``eksft masks`` reads it.
"""

from __future__ import annotations

import json
import logging
import math
import os

import torch
from transformers import TrainerCallback

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"


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
