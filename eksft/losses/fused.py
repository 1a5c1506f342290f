"""Memory-efficient loss head: the losses of :mod:`eksft.losses` computed from final hidden states and the
output projection, never holding full-vocabulary logits for the policy or the reference. Design: docs/fused_head.md.

Only the N valid targets are projected, ``chunk_size`` rows at a time, so at most one ``(chunk, V)`` block of logits
per model exists at once (plus the few elementwise temporaries of that block). Statistics are fp32.

Which losses it serves and how is the ``fused`` column of ``spec.SPECS``:

* ``"rows"``, per-target losses (sft, dft, gem, sed_sft, asft, global_reg, eaft): one pass. Each chunk of rows is handed
  to the logits-path function itself, as a batch of two-token sequences, so the per-token formulas are
  written once; autograd on that chunk gives the gradient w.r.t. its logits, which is projected straight into
  gradients for the hidden rows, the weight and the bias (Liger's fused linear cross-entropy pattern). sft, dft
  and eaft use their closed-form block gradient instead (``fused_passes.FAST_PATH``; the autograd route is its plain
  twin).
* ``"planned"``, losses whose mask needs every target first (eksft, random_mask): pass 1 (no grad) collects
  log p(y), H and KL for every valid target and :func:`plan_eksft` (or :func:`plan_random_mask`) fixes masks and
  per-target coefficients; pass 2
  recomputes each chunk's logits and forms the gradient of ``ce_w*(-logp) - ent_w*H + kl_w*KL`` (in closed form on
  reused buffers; autograd on the plain twin). Targets that carry no regulariser need no reference logits in pass 2.

The gradients are computed in the forward and handed over by :class:`PrecomputedGrad` in backward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .ablations import global_reg_loss
from .fused_passes import (
    Grads,
    PrecomputedGrad,
    Projection,
    Workspace,
    logit_transform,
    row_pass,
    stats_pass,
    weighted_grad_pass,
    weighted_objective,
)
from .targets import LossResult, denominator, sequence_ids, valid_label_mask

#: Rows per block. 128 x 151,936 fp32 logits is 78 MB; the matmul is still large enough to run at full speed.
DEFAULT_CHUNK_SIZE = 128


def head_logits(hidden, weight, bias=None, *, logit_scale=None, final_logit_softcapping=None) -> torch.Tensor:
    """The plain twin: full ``(B, T, V)`` logits as the Hugging Face model computes them (in the model dtype)."""
    return logit_transform(F.linear(hidden, weight, bias), logit_scale, final_logit_softcapping)


# ------------------------------------------------------------------------------------------------------ the head
def check_head_tensors(hidden, weight, bias, labels, hidden_name, weight_name, bias_name):
    if not (isinstance(hidden, torch.Tensor) and hidden.dim() == 3 and hidden.is_floating_point()):
        raise ValueError(
            f"`{hidden_name}` must be a floating-point (B, T, d) tensor of final hidden states (after the "
            f"final norm); got {getattr(hidden, 'shape', type(hidden).__name__)}."
        )
    if hidden.shape[:2] != labels.shape:
        raise ValueError(
            f"`{hidden_name}` has shape {tuple(hidden.shape)} but `labels` {tuple(labels.shape)}; "
            "they must share (B, T) (labels unshifted, HF convention)."
        )
    if not (isinstance(weight, torch.Tensor) and weight.dim() == 2 and weight.shape[1] == hidden.shape[-1]):
        raise ValueError(
            f"`{weight_name}` must be the (V, d) lm_head weight with d = {hidden.shape[-1]} (the last "
            f"dimension of `{hidden_name}`); got {getattr(weight, 'shape', None)}."
        )
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"`{bias_name}` must have shape ({weight.shape[0]},); got {tuple(bias.shape)}.")


def _check_token_ids(tokens: torch.Tensor, vocab: int, ignore_index: int) -> None:
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab):
        raise ValueError(
            f"`labels` contains ids outside [0, {vocab}) that are not ignore_index={ignore_index}; "
            "the tokenizer and the model's vocabulary disagree."
        )


def fused_loss(
    spec,
    options: dict,
    hidden: torch.Tensor,
    lm_head_weight: torch.Tensor,
    labels: torch.Tensor,
    ref_hidden: torch.Tensor | None = None,
    ref_lm_head_weight: torch.Tensor | None = None,
    *,
    chunk_size: int,
    normalization: str,
    ignore_index: int = -100,
    num_items_in_batch=None,
    position_ids: torch.Tensor | None = None,
    lm_head_bias: torch.Tensor | None = None,
    ref_lm_head_bias: torch.Tensor | None = None,
    **transforms,
) -> LossResult:
    """The loss of ``spec`` (an ``eksft.losses.spec.LossSpec`` the fused head serves) with ``options`` (complete and
    valid: ``BoundLoss`` and ``fused_head_loss`` check them) from final hidden states, without ``(B, T, V)`` logits.
    ``transforms``: ``logit_scale``, ``final_logit_softcapping``. Arguments as ``eksft.losses.fused_head_loss``
    takes them."""
    head = dict(
        logit_scale=transforms.get("logit_scale"), final_logit_softcapping=transforms.get("final_logit_softcapping")
    )
    valid = valid_label_mask(labels, ignore_index)  # (B, T) label positions j >= 1 that are scored
    tokens = labels[valid].long()
    _check_token_ids(tokens, lm_head_weight.shape[0], ignore_index)
    if tokens.numel() == 0:  # the logits-path function on one (B, 1, V) column: its zero loss, metrics and shapes
        ref = (
            (head_logits(ref_hidden[:, :1], ref_lm_head_weight, ref_lm_head_bias, **head).detach(),)
            if spec.needs_reference
            else ()
        )
        r = spec.fn(
            head_logits(hidden[:, :1], lm_head_weight, lm_head_bias, **head),
            labels[:, :1],
            *ref,
            normalization=normalization,
            ignore_index=ignore_index,
            num_items_in_batch=num_items_in_batch,
            **options,
        )
        return LossResult(r.loss, r.metrics, None if r.mask is None else torch.zeros_like(valid))

    rows = hidden[:, :-1][valid[:, 1:]]  # (N, d): row j-1 scores label j; autograd scatters its gradient back
    proj = Projection(
        lm_head_weight.detach(),
        None if lm_head_bias is None else lm_head_bias.detach(),
        head["logit_scale"],
        head["final_logit_softcapping"],
    )
    ref_rows = ref_proj = None
    if spec.needs_reference:
        ref_rows = ref_hidden[:, :-1][valid[:, 1:]].detach()
        ref_proj = Projection(
            ref_lm_head_weight.detach(),
            None if ref_lm_head_bias is None else ref_lm_head_bias.detach(),
            head["logit_scale"],
            head["final_logit_softcapping"],
        )
    grads = None
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (rows, lm_head_weight, lm_head_bias)):
        grads = Grads(rows, lm_head_weight, lm_head_bias)
    ws = Workspace.ensure(None, rows, proj, chunk_size)  # the (chunk, V) blocks, shared by the passes
    n = tokens.numel()
    target_logp = None
    with torch.no_grad():
        if spec.fused == "rows":
            d = denominator(n, normalization, num_items_in_batch, n)  # the global normaliser, shared by all chunks
            loss, metrics = row_pass(
                spec.fn,
                rows.detach(),
                tokens,
                proj,
                ref_rows,
                ref_proj,
                d,
                chunk_size,
                grads,
                ignore_index,
                options,
                ws,
            )
            mask = torch.zeros_like(valid) if spec.fn is global_reg_loss else None
        else:  # "planned": statistics of every target, one plan, then the gradient
            logp, h, kl = stats_pass(rows.detach(), tokens, proj, ref_rows, ref_proj, chunk_size, ws)
            shared = dict(
                normalization=normalization, num_items_in_batch=num_items_in_batch, vocab_size=lm_head_weight.shape[0]
            )
            plan = spec.plan(logp, h, kl, sequence_ids(labels, position_ids)[valid], **shared, **options)
            weights, metrics = (plan.ce_weight, plan.entropy_weight, plan.kl_weight), plan.metrics
            loss = weighted_objective(logp, h, kl, *weights)
            metrics["loss"] = float(loss)
            mask = torch.zeros_like(valid)
            mask[valid] = plan.mask
            target_logp = torch.zeros(valid.shape, dtype=torch.float32, device=valid.device)
            target_logp[valid] = logp.float()
            if grads is not None:
                weighted_grad_pass(rows.detach(), tokens, proj, ref_rows, ref_proj, *weights, chunk_size, grads, ws)
    if grads is not None:
        loss = PrecomputedGrad.apply(loss, rows, lm_head_weight, lm_head_bias, grads)
    return LossResult(loss=loss, metrics=metrics, mask=mask, target_logp=target_logp)
