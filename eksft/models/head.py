"""What the fused loss head (``eksft.losses.fused``) needs from a Hugging Face causal LM: the output
projection and its logit transforms, the backbone's final hidden states, and (for training) a forward that ends in
the loss instead of the logits.

    parts = lm_head_parts(model)
    hidden = backbone_hidden_states(model, input_ids=..., attention_mask=...)          # (B, T, d), after the norm
    ref_parts = lm_head_parts(ref_model)
    with torch.no_grad():
        ref_hidden = backbone_hidden_states(ref_model, input_ids=..., attention_mask=...)
    result = eksft_head_loss(hidden, parts.weight, labels, ref_hidden, ref_parts.weight, **parts.head_kwargs(ref_parts))
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import types
from dataclasses import dataclass

import torch
from transformers.modeling_outputs import BaseModelOutput, ModelOutput


@dataclass(frozen=True)
class LMHead:
    """The pieces of a causal LM's output head: ``logits = softcap(logit_scale * (hidden @ weight.T + bias))``."""

    weight: torch.Tensor  # (V, d); the embedding matrix itself when `tied`
    bias: torch.Tensor | None
    logit_scale: float | None  # None: no multiplier
    final_logit_softcapping: float | None  # None: no soft-cap
    tied: bool  # weight is the input embedding matrix (its gradient adds to the embedding's)

    def head_kwargs(self, ref: LMHead | None = None) -> dict:
        """Keyword arguments for ``fused_head_loss`` / ``eksft_head_loss`` (the reference's bias from ``ref``)."""
        if ref is not None and (ref.logit_scale, ref.final_logit_softcapping) != (
            self.logit_scale,
            self.final_logit_softcapping,
        ):
            raise ValueError(
                "The policy and the reference have different logit_scale / final_logit_softcapping; "
                "the fused head applies one transform to both. Use the same architecture for both."
            )
        return {
            "lm_head_bias": self.bias,
            "ref_lm_head_bias": None if ref is None else ref.bias,
            "logit_scale": self.logit_scale,
            "final_logit_softcapping": self.final_logit_softcapping,
        }


def _base(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model under a PEFT wrapper (LoRA layers stay injected in it), or the model itself."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _logit_scale(config) -> float | None:
    """Logit multipliers transformers models apply after lm_head: Cohere ``logit_scale`` (multiplies), Granite
    ``logits_scaling`` (divides), Falcon-H1 ``lm_head_multiplier`` (multiplies)."""
    if getattr(config, "logit_scale", None) is not None:
        return float(config.logit_scale)
    if getattr(config, "logits_scaling", None) is not None:
        return 1.0 / float(config.logits_scaling)
    if getattr(config, "lm_head_multiplier", None) is not None:
        return float(config.lm_head_multiplier)
    return None


def lm_head_parts(model: torch.nn.Module) -> LMHead:
    """The output head of a Hugging Face causal LM (or a PEFT model around one), for the fused loss head.

    Refuses heads the fused path would silently bypass: LoRA (or any PEFT tuner) on ``lm_head``, and
    ``modules_to_save`` copies of it, since the fused head reads ``lm_head.weight`` directly.
    """
    base = _base(model)
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    if head is None:
        raise ValueError(f"{type(base).__name__} has no output embeddings (lm_head); the fused head needs a causal LM.")
    if hasattr(head, "lora_A") or any(".lora_A" in f".{name}" for name, _ in head.named_modules()):
        raise ValueError(
            "lm_head carries LoRA adapters, which the fused loss head would bypass (it reads "
            "lm_head.weight directly). Remove 'lm_head' from the LoRA target_modules, or use the "
            "logits path (eksft_loss on model(...).logits)."
        )
    if not isinstance(head, torch.nn.Linear):
        raise ValueError(
            f"lm_head is a {type(head).__name__}, not a torch.nn.Linear (a PEFT wrapper such as "
            "modules_to_save?); the fused loss head supports a plain linear head only. Use the logits "
            "path (eksft_loss on model(...).logits) for this model."
        )
    config = base.config.get_text_config() if hasattr(base.config, "get_text_config") else base.config
    embeddings = base.get_input_embeddings()
    tied = embeddings is not None and embeddings.weight.data_ptr() == head.weight.data_ptr()
    softcap = getattr(config, "final_logit_softcapping", None)
    return LMHead(head.weight, head.bias, _logit_scale(config), None if softcap is None else float(softcap), tied)


def backbone_hidden_states(model: torch.nn.Module, **inputs) -> torch.Tensor:
    """``(B, T, d)`` final hidden states (after the final norm) from the model's decoder, without the lm_head.

    ``inputs`` are what the model's forward takes (``input_ids``, ``attention_mask``, ``position_ids``, ...). Under PEFT
    the LoRA layers of the backbone are used (and ``model.disable_adapter()`` gives the reference).
    """
    base = _base(model)
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else getattr(base, base.base_model_prefix)
    if decoder is None or decoder is base:
        raise ValueError(f"Cannot find the backbone of {type(base).__name__} (get_decoder() / base_model_prefix).")
    inputs.pop("labels", None)  # the backbone computes no loss
    return decoder(**inputs, use_cache=False).last_hidden_state


# --------------------------------------------------------------------------------------------- the training forward
@contextlib.contextmanager
def gathered(head: LMHead | None):
    """``head`` with full (unsharded) weight and bias while the context lasts (a no-op on one device)."""
    if head is None:
        yield None
        return
    from torch.distributed.tensor import DTensor
    from trl.trainer.utils import maybe_gather_lm_head_ctx

    weight, bias = head.weight, head.bias
    if isinstance(weight, DTensor):  # FSDP2 shards parameters as DTensors
        weight = weight.full_tensor()
        bias = bias.full_tensor() if isinstance(bias, DTensor) else bias
    with maybe_gather_lm_head_ctx(weight, bias):  # DeepSpeed ZeRO-3: all-gather for the direct read
        yield dataclasses.replace(head, weight=weight, bias=bias)


@dataclass
class LossOutput(ModelOutput):
    """What the loss forward returns: the loss (the tensor the wrappers' hooks see) and the loss's whole result."""

    loss: torch.Tensor | None = None
    result: object = None  # eksft.losses.LossResult


def add_loss_forward(model) -> None:
    """Patch ``model.forward`` (the transformers model; under PEFT the base model; idempotent) the way TRL's
    ``add_fused_lm_head`` patches it for its chunked NLL, so the call still goes through every wrapper (PEFT, DDP,
    DeepSpeed, FSDP, accelerate's autocast) and their hooks fire:

    - ``model(..., eksft_hidden=True)`` runs the backbone only and returns ``BaseModelOutput(last_hidden_state)``
      (the reference's forward; no ``(B, T, V)`` logits);
    - ``model(..., labels=..., eksft_loss=bound, eksft_reference=(ref_hidden, ref_head), eksft_batch={...})`` runs
      the backbone and returns ``LossOutput`` of ``bound.on_hidden(hidden, head, labels, ...)`` (an
      ``eksft.losses.BoundLoss``), with the lm head (policy and reference) gathered (ZeRO-3 / FSDP2) for the call:
      the head runs inside the loss, inside the model's forward, where its full weight exists;
    - without these keywords the forward is the one it wraps (generation, evaluation metrics, PSFT, SED calibration).
    """
    if getattr(model, "_eksft_loss_forward", False):
        return
    original_forward = model.forward

    @functools.wraps(type(model).forward)  # keep the signature: generate() validates kwargs against it
    def forward(self, *args, eksft_hidden=False, eksft_loss=None, eksft_reference=None, eksft_batch=None, **kwargs):
        if not eksft_hidden and eksft_loss is None:
            return original_forward(*args, **kwargs)
        if args:
            raise TypeError("the eksft loss forward takes keyword inputs only (input_ids=..., ...).")
        labels = kwargs.pop("labels", None)
        for k in ("use_cache", "shift_labels", "num_items_in_batch", "logits_to_keep"):
            kwargs.pop(k, None)
        hidden = backbone_hidden_states(self, **kwargs)
        if eksft_hidden:
            return BaseModelOutput(last_hidden_state=hidden)
        ref_hidden, ref_head = eksft_reference or (None, None)
        with gathered(lm_head_parts(self)) as head, gathered(ref_head) as ref:
            result = eksft_loss.on_hidden(hidden, head, labels, ref_hidden=ref_hidden, ref_head=ref, **eksft_batch)
        return LossOutput(loss=result.loss, result=result)

    model.forward = types.MethodType(forward, model)
    model._eksft_loss_forward = True
