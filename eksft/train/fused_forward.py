"""The model side of ``loss_implementation: fused``: a forward that stops at the final hidden states.

:func:`add_hidden_forward` patches ``model.forward`` (the transformers model; under PEFT the base model) the way
TRL's ``add_fused_lm_head`` does for its chunked NLL, so the call still goes through every wrapper (PEFT, DDP,
DeepSpeed, FSDP, accelerate's autocast) and their hooks fire:

- ``model(..., eksft_hidden=True)`` runs the backbone only and returns ``BaseModelOutput(last_hidden_state)``
  (the reference's forward; no ``(B, T, V)`` logits);
- ``model(..., eksft_head_loss=fn)`` runs the backbone and returns ``fn(hidden, head)``, where ``head`` is
  ``eksft.models.lm_head_parts(model)`` with its weight gathered (DeepSpeed ZeRO-3 / FSDP2 ``DTensor``) for the
  duration of the call: the lm head runs inside the loss, inside the model's forward.
- without either keyword the forward is the one it wraps (generation, evaluation metrics, PSFT, SED calibration).

No loss maths here: ``fn`` is the trainer's call of ``loss_seam.compute_fused``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import types

from transformers.modeling_outputs import BaseModelOutput
from trl.trainer.utils import maybe_gather_lm_head_ctx

from eksft.models.head import LMHead, backbone_hidden_states, lm_head_parts


@contextlib.contextmanager
def gathered(head: LMHead | None):
    """``head`` with full (unsharded) weight and bias while the context lasts (a no-op on one device)."""
    if head is None:
        yield None
        return
    weight, bias = head.weight, head.bias
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # pragma: no cover - old torch
        DTensor = ()
    if isinstance(weight, DTensor):  # FSDP2 shards parameters as DTensors
        weight = weight.full_tensor()
        bias = bias.full_tensor() if isinstance(bias, DTensor) else bias
    with maybe_gather_lm_head_ctx(weight, bias):  # DeepSpeed ZeRO-3: all-gather for the direct read
        yield dataclasses.replace(head, weight=weight, bias=bias)


def add_hidden_forward(model) -> None:
    """Patch ``model.forward`` (idempotent); see the module docstring."""
    if getattr(model, "_eksft_hidden_forward", False):
        return
    original_forward = model.forward

    @functools.wraps(type(model).forward)  # keep the signature: generate() validates kwargs against it
    def forward(self, *args, eksft_hidden=False, eksft_head_loss=None, **kwargs):
        if not eksft_hidden and eksft_head_loss is None:
            return original_forward(*args, **kwargs)
        if args:
            raise TypeError("the eksft hidden-state forward takes keyword inputs only (input_ids=..., ...).")
        for k in ("labels", "use_cache", "shift_labels", "num_items_in_batch", "logits_to_keep"):
            kwargs.pop(k, None)
        hidden = backbone_hidden_states(self, **kwargs)
        if eksft_hidden:
            return BaseModelOutput(last_hidden_state=hidden)
        with gathered(lm_head_parts(self)) as head:
            return eksft_head_loss(hidden, head)

    model.forward = types.MethodType(forward, model)
    model._eksft_hidden_forward = True
