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
    """

    loss: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)
    mask: torch.Tensor | None = None
