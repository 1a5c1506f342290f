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

import inspect

import torch
import torch.nn.functional as F

from .ablations import plan_random_mask
from .eksft import plan_eksft
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
from .spec import SPECS, fused_refusal
from .tokens import NORMALIZATIONS, check_choice, denominator, sequence_ids, valid_label_mask
from .types import LossResult

#: The losses the fused head serves (``SPECS[name].fused`` is set).
FUSED_LOSSES = tuple(name for name, spec in SPECS.items() if spec.fused)
#: Rows per block. 128 x 151,936 fp32 logits is 78 MB; the matmul is still large enough to run at full speed.
DEFAULT_CHUNK_SIZE = 128


def head_logits(hidden, weight, bias=None, *, logit_scale=None, final_logit_softcapping=None) -> torch.Tensor:
    """The plain twin: full ``(B, T, V)`` logits as the Hugging Face model computes them (in the model dtype)."""
    return logit_transform(F.linear(hidden, weight, bias), logit_scale, final_logit_softcapping)


# ------------------------------------------------------------------------------------------------------ validation
def _check_tensors(hidden, weight, bias, labels, hidden_name, weight_name, bias_name):
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


def _check_options(loss_type: str, options: dict) -> dict:
    """The loss's own keyword options (those of the logits-path function), with its defaults filled in."""
    fn = SPECS[loss_type].fn
    shared = {"normalization", "ignore_index", "num_items_in_batch", "position_ids"}
    params = {
        p.name: p.default
        for p in inspect.signature(fn).parameters.values()
        if p.kind is p.KEYWORD_ONLY and p.name not in shared
    }
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise ValueError(f"`{loss_type}` has no option(s) {unknown}; its options are {sorted(params)}.")
    missing = [k for k, v in params.items() if v is inspect.Parameter.empty and k not in options]
    if missing:
        raise ValueError(f"`{loss_type}` needs the option(s) {missing} (see {fn.__name__}).")
    return {**{k: v for k, v in params.items() if v is not inspect.Parameter.empty}, **options}


def _validate(
    loss_type,
    hidden,
    weight,
    labels,
    ref_hidden,
    ref_weight,
    bias,
    ref_bias,
    chunk_size,
    normalization,
    ignore_index,
    options,
) -> dict:
    """The argument checks of :func:`fused_head_loss` (the label ids: :func:`_check_token_ids`, on the targets it
    gathers anyway); returns the loss's options with defaults filled in."""
    check_choice("loss_type", loss_type, FUSED_LOSSES)
    check_choice("normalization", normalization, NORMALIZATIONS)
    options = _check_options(loss_type, options)
    refusal = fused_refusal(loss_type, options)
    if refusal:
        raise ValueError(f"{refusal}; use {SPECS[loss_type].fn.__name__} on full logits.")
    if not (isinstance(chunk_size, int) and chunk_size >= 1):
        raise ValueError(f"`chunk_size` must be an integer >= 1 (targets per block), got {chunk_size!r}.")
    if not isinstance(labels, torch.Tensor) or labels.dim() != 2 or labels.is_floating_point():
        raise ValueError("`labels` must be an integer tensor of shape (B, T).")
    _check_tensors(hidden, weight, bias, labels, "hidden", "lm_head_weight", "lm_head_bias")
    if SPECS[loss_type].needs_reference:
        if ref_hidden is None or ref_weight is None:
            raise ValueError(f"`{loss_type}` needs the reference: pass `ref_hidden` and `ref_lm_head_weight`.")
        _check_tensors(ref_hidden, ref_weight, ref_bias, labels, "ref_hidden", "ref_lm_head_weight", "ref_lm_head_bias")
        if ref_weight.shape[0] != weight.shape[0]:
            raise ValueError("`ref_lm_head_weight` and `lm_head_weight` must have the same vocabulary size V.")
    return options


def _check_token_ids(tokens: torch.Tensor, vocab: int, ignore_index: int) -> None:
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab):
        raise ValueError(
            f"`labels` contains ids outside [0, {vocab}) that are not ignore_index={ignore_index}; "
            "the tokenizer and the model's vocabulary disagree."
        )


# ------------------------------------------------------------------------------------------------------ public API
def fused_head_loss(
    loss_type: str,
    hidden: torch.Tensor,
    lm_head_weight: torch.Tensor,
    labels: torch.Tensor,
    ref_hidden: torch.Tensor | None = None,
    ref_lm_head_weight: torch.Tensor | None = None,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    lm_head_bias: torch.Tensor | None = None,
    ref_lm_head_bias: torch.Tensor | None = None,
    logit_scale: float | None = None,
    final_logit_softcapping: float | None = None,
    normalization: str = "mean",
    ignore_index: int = -100,
    num_items_in_batch=None,
    position_ids: torch.Tensor | None = None,
    **options,
) -> LossResult:
    """``LOSSES[loss_type]`` on ``head_logits(hidden, ...)`` (and the reference's), without building those logits.

    Args:
        loss_type: one of ``FUSED_LOSSES``: eksft, sft, dft, gem, sed_sft, asft, global_reg, random_mask, eaft.
        hidden: ``(B, T, d)`` policy final hidden states (after the final norm). Gradients flow into these.
        lm_head_weight: ``(V, d)`` policy output projection (may be the tied embedding matrix); gets a gradient.
        labels: ``(B, T)`` unshifted token ids, ``ignore_index`` where not scored.
        ref_hidden, ref_lm_head_weight: the frozen reference's, for losses that need it (``SPECS``; detached here).
        chunk_size: valid targets projected at once; peak extra memory is a few ``(chunk_size, V)`` fp32 blocks.
        lm_head_bias, ref_lm_head_bias: ``(V,)`` output biases, if the heads have them.
        logit_scale, final_logit_softcapping: the model's logit multiplier and soft-cap
            (``eksft.models.lm_head_parts``), applied to both models' logits.
        normalization, ignore_index, num_items_in_batch, position_ids, **options: as the logits-path loss takes them.
    """
    options = _validate(
        loss_type,
        hidden,
        lm_head_weight,
        labels,
        ref_hidden,
        ref_lm_head_weight,
        lm_head_bias,
        ref_lm_head_bias,
        chunk_size,
        normalization,
        ignore_index,
        options,
    )
    spec = SPECS[loss_type]
    head = dict(logit_scale=logit_scale, final_logit_softcapping=final_logit_softcapping)
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
        logit_scale,
        final_logit_softcapping,
    )
    ref_rows = ref_proj = None
    if spec.needs_reference:
        ref_rows = ref_hidden[:, :-1][valid[:, 1:]].detach()
        ref_proj = Projection(
            ref_lm_head_weight.detach(),
            None if ref_lm_head_bias is None else ref_lm_head_bias.detach(),
            logit_scale,
            final_logit_softcapping,
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
            mask = None if loss_type != "global_reg" else torch.zeros_like(valid)
        else:  # "planned": statistics of every target, one plan, then the gradient
            logp, h, kl = stats_pass(rows.detach(), tokens, proj, ref_rows, ref_proj, chunk_size, ws)
            shared = dict(
                normalization=normalization, num_items_in_batch=num_items_in_batch, vocab_size=lm_head_weight.shape[0]
            )
            if loss_type == "eksft":
                plan = plan_eksft(logp, h, kl, sequence_ids(labels, position_ids)[valid], **shared, **options)
            else:
                plan = plan_random_mask(logp, h, kl, **shared, **options)
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


def eksft_head_loss(hidden, lm_head_weight, labels, ref_hidden, ref_lm_head_weight, **kwargs) -> LossResult:
    """:func:`eksft_loss` from final hidden states, without ``(B, T, V)`` logits: ``fused_head_loss("eksft", ...)``.
    EKSFT's options (``rho``, ``lambda_entropy``, ... with ``eksft_loss``'s defaults) and the head arguments
    (``chunk_size``, ``lm_head_bias``, ``logit_scale``, ...) as :func:`fused_head_loss` takes them.
    ``variant="official"`` is refused (docs/fused_head.md)."""
    return fused_head_loss("eksft", hidden, lm_head_weight, labels, ref_hidden, ref_lm_head_weight, **kwargs)
