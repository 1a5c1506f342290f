"""The argument checks of the losses, and :class:`NonFiniteError` (a NaN/inf input or statistic: a diverged run, not
a bad argument). Run where a loss is called from outside (the public functions on logits, ``fused_head_loss``) and
once when the trainer binds its loss (``eksft.losses.spec.BoundLoss``), not inside the per-target maths.
"""

from __future__ import annotations

import math

import torch


class NonFiniteError(ValueError):
    """A loss input or statistic is NaN or inf: a diverged run or an overflow, not a bad argument. ``quantity``
    names it; the trainer turns this into its divergence stop (eksft.train.trainer.TrainingDiverged)."""

    def __init__(self, message: str, quantity: str):
        super().__init__(message)
        self.quantity = quantity


def check_logits(name: str, logits: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor):
        raise ValueError(f"`{name}` must be a torch.Tensor of shape (B, T, V), got {type(logits).__name__}.")
    if logits.dim() != 3:
        raise ValueError(f"`{name}` must have shape (B, T, V); got {tuple(logits.shape)}.")
    if not logits.is_floating_point():
        raise ValueError(f"`{name}` must be a floating-point tensor; got dtype {logits.dtype}.")
    if logits.numel() and not bool(torch.isfinite(logits).all()):
        raise NonFiniteError(
            f"`{name}` contains NaN or inf values. Check the model's forward pass (overflow in fp16/bf16, "
            "a diverged run) before computing the loss.",
            name,
        )


def check_inputs(
    logits: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int,
    ref_logits: torch.Tensor | None = None,
    *,
    ref_name: str = "ref_logits",
) -> None:
    check_logits("logits", logits)
    if not isinstance(labels, torch.Tensor) or labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ValueError("`labels` must be an integer tensor of shape (B, T).")
    if labels.shape != logits.shape[:2]:
        raise ValueError(
            f"`labels` has shape {tuple(labels.shape)} but `logits` has shape {tuple(logits.shape)}; "
            "labels must be (B, T) matching the first two dimensions of logits (unshifted, HF convention)."
        )
    valid = labels != ignore_index
    if valid.any():
        lv = labels[valid]
        if int(lv.min()) < 0 or int(lv.max()) >= logits.shape[-1]:
            raise ValueError(
                f"`labels` contains ids outside [0, {logits.shape[-1]}) that are not ignore_index={ignore_index}; "
                "the tokenizer and the model's vocabulary disagree."
            )
    if ref_logits is not None:
        check_logits(ref_name, ref_logits)
        if ref_logits.shape != logits.shape:
            raise ValueError(
                f"`{ref_name}` has shape {tuple(ref_logits.shape)} but `logits` has shape {tuple(logits.shape)}; "
                "the reference must see the same batch and have the same vocabulary as the policy."
            )


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}, got {value!r}.")


def check_nonnegative(**values: float) -> None:
    for name, value in values.items():
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ValueError(f"`{name}` must be a finite number >= 0, got {value!r}.")


def check_fraction(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
        raise ValueError(f"`{name}` must be in [0, 1], got {value!r}.")
