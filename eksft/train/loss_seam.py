"""The trainer's one seam to ``eksft.losses``: which path runs, the config fields -> loss keyword arguments, the call.

No loss maths here and no per-loss table: what each loss needs is ``eksft.losses.SPECS`` (its ``fields`` map config
fields to keyword arguments, ``third`` and ``per_batch`` name its extra inputs, ``fused`` says whether the fused head
serves it). :func:`implementation` decides once per trainer between the two paths: ``logits`` calls
``SPECS[loss_type].fn`` on full ``(B, T, V)`` logits (:func:`compute`); ``fused`` calls
``eksft.losses.fused.fused_head_loss`` on final hidden states and the output projection (:func:`compute_fused`) with
the same options.
"""

from __future__ import annotations

import torch

from eksft.losses import SPECS, LossResult, fused_refusal
from eksft.losses.fused import fused_head_loss
from eksft.models.head import lm_head_parts

from .global_scope import global_eksft_loss


def needs_reference(args) -> bool:
    return SPECS[args.loss_type].needs_reference


def loss_kwargs(args, name: str | None = None) -> dict:
    """The configured options of loss ``name`` (default ``args.loss_type``), as that function's keyword arguments."""
    return {kw: getattr(args, field) for kw, field in SPECS[name or args.loss_type].fields.items()}


def implementation(args, model=None) -> tuple[str, str | None]:
    """``("fused" | "logits", why not fused)``: the one place the path is chosen. Config reasons come from the loss's
    spec (``eksft.losses.fused_refusal``); with ``model``, model reasons (LoRA or ``modules_to_save`` on lm_head, a
    non-linear head) from ``eksft.models.lm_head_parts``. ``auto`` falls back to logits; an explicit ``fused`` that
    cannot run is an error naming the reason."""
    if args.loss_implementation == "logits":
        return "logits", "loss_implementation='logits'"
    reason = fused_refusal(args.loss_type, loss_kwargs(args))
    if reason is None and model is not None:
        try:
            lm_head_parts(model)
        except ValueError as e:
            reason = str(e)
    if reason is None:
        return "fused", None
    if args.loss_implementation == "fused":
        raise ValueError(
            f"EKSFTConfig.loss_implementation='fused': {reason}; set loss_implementation: auto "
            "(falls back to the logits path) or logits."
        )
    return "logits", reason


def _call(args, name, *, num_items_in_batch, position_ids, tau, seed) -> dict:
    """The loss's keyword arguments: config options plus the per-batch ones its spec names (shared by both paths)."""
    kw = loss_kwargs(args, name)
    kw.update(num_items_in_batch=num_items_in_batch, position_ids=position_ids)
    kw.update({k: v for k, v in (("tau", tau), ("seed", seed)) if k in SPECS[name].per_batch})
    return kw


def compute(
    args,
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    ref_logits=None,
    old_logps=None,
    tau=None,
    num_items_in_batch=None,
    position_ids=None,
    seed: int = 0,
    loss_type: str | None = None,
) -> LossResult:
    """Call the configured loss on one micro-batch. ``loss_type`` overrides ``args.loss_type`` (PSFT's eval)."""
    name = loss_type or args.loss_type
    spec = SPECS[name]
    kw = _call(args, name, num_items_in_batch=num_items_in_batch, position_ids=position_ids, tau=tau, seed=seed)
    extra = ()
    if spec.third is not None:
        value = ref_logits if spec.third == "ref_logits" else old_logps
        if value is None:
            raise RuntimeError(f"loss_type={name!r} needs {spec.third} but none were computed (trainer bug).")
        extra = (value,)
    if name == "eksft" and kw["scope"] == "global":  # EKSFTConfig allows it with variant='paper' only
        kw = {k: v for k, v in kw.items() if k not in ("scope", "variant")}
        return global_eksft_loss(logits, labels, *extra, **kw)
    return spec.fn(logits, labels, *extra, **kw)


def compute_fused(
    args,
    hidden: torch.Tensor,
    head,
    labels: torch.Tensor,
    *,
    ref_hidden=None,
    ref_head=None,
    tau=None,
    num_items_in_batch=None,
    position_ids=None,
    seed: int = 0,
) -> LossResult:
    """The configured loss from final hidden states: ``fused_head_loss`` with the options :func:`compute` passes.
    ``head`` / ``ref_head`` are ``eksft.models.LMHead`` (weights already gathered under ZeRO-3 / FSDP)."""
    name = args.loss_type
    kw = _call(args, name, num_items_in_batch=num_items_in_batch, position_ids=position_ids, tau=tau, seed=seed)
    ref = ()
    if needs_reference(args):
        if ref_hidden is None or ref_head is None:
            raise RuntimeError(
                f"loss_type={name!r} needs reference hidden states but none were computed (trainer bug)."
            )
        ref = (ref_hidden, ref_head.weight)
    return fused_head_loss(name, hidden, head.weight, labels, *ref, **head.head_kwargs(ref_head), **kw)


def validate(args) -> None:
    """Before any model loads: the path (an explicit ``fused`` that cannot run fails here), and the configured loss
    run once on a 1x3x5 dummy batch so a bad hyper-parameter fails with the loss's own message, re-raised with the
    config field name."""
    implementation(args)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 3, 5, generator=g)
    labels = torch.tensor([[-100, 1, 2]])
    try:
        compute(
            args,
            logits,
            labels,
            ref_logits=torch.randn(1, 3, 5, generator=g),
            old_logps=torch.zeros(1, 3),
            tau=args.sed_tau if args.sed_tau is not None else 0.5,
        )
    except ValueError as e:
        fields = ", ".join(f"{kw} = EKSFTConfig.{f}" for kw, f in SPECS[args.loss_type].fields.items() if kw in str(e))
        raise ValueError(f"invalid loss option for loss_type={args.loss_type!r}: {e} ({fields or 'see --help'})") from e
