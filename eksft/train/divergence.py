"""Stopping a diverged run: :class:`TrainingDiverged` (never a match on an error's text) and its message, which
names the quantity that went NaN/inf, the step, the newest checkpoint whose saved weights were read back finite
(eksft/jobs/output_dir.py), and the fix. ``EKSFTTrainer`` raises it before the step that would write NaN into the
weights.
"""

from __future__ import annotations

import torch

from eksft.jobs.output_dir import last_finite_checkpoint


class TrainingDiverged(RuntimeError):
    """A quantity of the optimiser step went NaN/inf; raised before that step changes the weights. ``step`` (the
    optimiser step that was stopped), ``quantity`` (what went non-finite) and ``checkpoint`` (the newest checkpoint
    with finite weights, or None) are attributes; the message names them and the fix. ``eksft train`` exits 1."""

    exit_code = 1

    def __init__(self, message: str, *, step: int, quantity: str, checkpoint: str | None):
        super().__init__(message)
        self.step, self.quantity, self.checkpoint = step, quantity, checkpoint


def diverged(args, step: int, quantity: str, value, after_step: bool = False) -> TrainingDiverged:
    """The error to raise: at optimiser ``step`` (``after_step``: its weights, so they were not saved)."""
    shown = (
        "NaN/inf"
        if value is None or isinstance(value, torch.Tensor) and value.numel() > 1
        else f"{float(value.detach() if isinstance(value, torch.Tensor) else value)}"
    )
    last = last_finite_checkpoint(args.output_dir)
    when = (
        f"after optimiser step {step}: non-finite {quantity} ({shown}), so they were not saved"
        if after_step
        else f"at optimiser step {step}: non-finite {quantity} ({shown}); training stopped before that step "
        "could change the weights"
    )
    a = args
    fix = (
        f"lower learning_rate (now {a.learning_rate:g})"
        + (f" or clip gradients with max_grad_norm (now {a.max_grad_norm:g})" if not a.max_grad_norm else "")
        + ", or check the data of that step"
    )
    if last:
        where = (
            f"Last checkpoint with finite weights (checked): {last}. Fix: {fix}; then retrain with "
            f"--overwrite_output_dir true, or continue from those weights with --model_name_or_path {last} "
            "and a new output_dir (--resume_from_checkpoint would restore the saved optimiser and "
            "learning-rate schedule, so it would not lower the learning rate)."
        )
    else:
        where = (
            f"No checkpoint with finite weights in {a.output_dir}. Fix: {fix}; then retrain with "
            "--overwrite_output_dir true."
        )
    return TrainingDiverged(f"training diverged {when}. {where}", step=step, quantity=quantity, checkpoint=last)
