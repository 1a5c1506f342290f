"""The one result type every loss in :mod:`eksft.losses` returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class LossResult:
    """What a loss function returns.

    Attributes:
        loss: scalar tensor, differentiable with respect to the policy logits (or hidden states on the fused path).
        metrics: plain Python floats, ready for any logger. Means are over the micro-batch; ``num_targets``
            says how many valid targets they were taken over, so callers can weight them when aggregating.
        mask: ``(B, T)`` bool aligned with ``labels``; True where the target was taken out of cross-entropy.
            ``None`` for methods that never mask.
        target_logp: ``(B, T)`` float32, detached, aligned with ``labels``: the policy's log-probability of each
            target (0 where no target is scored); set by the losses that return a mask (what was masked, and how
            well the policy predicts it: the trainer's persistent-mask listing). ``None`` otherwise.
    """

    loss: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)
    mask: torch.Tensor | None = None
    target_logp: torch.Tensor | None = None
