"""Loading the frozen reference model of the KL / importance-weight losses (``SPECS[name].needs_reference``); the
trainer runs it on each batch (``EKSFTTrainer._reference``).

- Full fine-tuning: a second model, the starting checkpoint (``ref_model`` when set; else reloaded from the path the
  trainer was given, like TRL's DPO trainer; a deep copy taken before any step when it was given a model object),
  in eval mode with no grad,
  dropout off, and prepared like TRL prepares references (DeepSpeed / FSDP / ``evaluation_mode=True``).
- PEFT: no second copy. The reference is the policy inside ``disable_adapter()``: exactly the starting weights.
- A reference with another vocabulary size or tokenizer is refused: per-token KL needs the same token space.
- Fused head: the reference's forward is patched (``eksft.models.head.add_loss_forward``) before it is prepared, so
  ``ref(..., eksft_hidden=True)`` runs its backbone only and returns its final hidden states.
"""

from __future__ import annotations

import contextlib

import torch
from accelerate.utils import is_peft_model
from trl.models import prepare_deepspeed, prepare_fsdp
from trl.trainer.utils import disable_dropout_in_model

from eksft.models.head import add_loss_forward, lm_head_parts
from eksft.models.loading import load_causal_lm, load_tokenizer


def vocab_size(model) -> int:
    weight = model.get_output_embeddings().weight
    return int(getattr(weight, "ds_shape", weight.shape)[0])  # ZeRO-3 loads a 0-element placeholder; ds_shape: full


def check_compatible(policy, ref, policy_tok=None, ref_tok=None, ref_name: str = "ref_model") -> None:
    """Refuse a reference whose vocabulary size or tokenizer differs from the policy's."""
    if vocab_size(policy) != vocab_size(ref):
        raise ValueError(
            f"EKSFTConfig.ref_model={ref_name!r} has vocabulary size {vocab_size(ref)} but the policy has "
            f"{vocab_size(policy)}; the per-token KL needs one token space. Use a reference built from the same "
            "tokenizer (or leave ref_model unset to use the starting checkpoint)."
        )
    if policy_tok is not None and ref_tok is not None and policy_tok.get_vocab() != ref_tok.get_vocab():
        raise ValueError(
            f"EKSFTConfig.ref_model={ref_name!r} has a different tokenizer from the policy (same size, other tokens); "
            "the reference must score the same token ids. Use a checkpoint of the same model family."
        )


def load_reference(trainer, model_path: str | None, ref_path: str | None, start_copy=None, hidden_forward=False):
    """Build the frozen reference for ``trainer`` (None under PEFT: adapters are disabled instead).
    ``hidden_forward``: patch its forward for the fused head (before accelerate wraps it)."""
    args = trainer.args
    policy = trainer.model
    if is_peft_model(policy):
        if ref_path:
            raise ValueError(
                "EKSFTConfig.ref_model is set together with use_peft: with LoRA the reference is the base model with "
                "adapters disabled (no second copy). Unset ref_model, or train without PEFT to use another reference."
            )
        return None
    if model_path is None and trainer.is_deepspeed_enabled:
        model_path = args.model_name_or_path  # ZeRO-3 shards at load time: a deep copy would copy placeholders
    path = ref_path or model_path
    if path:
        init_kwargs = dict(args.model_init_kwargs or {})
        init_kwargs.setdefault("dtype", policy.dtype)
        init_kwargs.setdefault("attn_implementation", policy.config._attn_implementation)
        init_kwargs.setdefault("trust_remote_code", args.trust_remote_code)
        ref = load_causal_lm(path, **init_kwargs)
    elif start_copy is not None:  # given as an object: its weights copied before SFTTrainer touched it
        ref = start_copy
    else:
        raise ValueError("no reference: the policy was given as an object without a starting copy; set ref_model.")
    ref_tok = None
    if ref_path:
        with contextlib.suppress(OSError, ValueError):
            ref_tok = load_tokenizer(ref_path, padding_side=None)
    check_compatible(policy, ref, getattr(trainer, "processing_class", None), ref_tok, ref_path or "<start>")
    if hidden_forward:
        lm_head_parts(ref)  # refuse an unsupported head now, not at the first step
        add_loss_forward(ref)
    return prepare(trainer, ref)


def prepare(trainer, ref: torch.nn.Module) -> torch.nn.Module:
    ref.eval()
    ref.requires_grad_(False)
    disable_dropout_in_model(ref)
    if trainer.is_deepspeed_enabled:
        return prepare_deepspeed(ref, trainer.accelerator)
    if trainer.is_fsdp_enabled:
        return prepare_fsdp(ref, trainer.accelerator)
    return trainer.accelerator.prepare_model(ref, evaluation_mode=True)
