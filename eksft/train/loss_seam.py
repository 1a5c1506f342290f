"""The trainer's one seam to ``eksft.losses``: config fields -> loss keyword arguments, and the call itself.

No loss maths here: this file maps names and dispatches. ``loss_implementation`` picks the path: ``logits`` calls
the functions of ``eksft.losses.LOSSES`` on full ``(B, T, V)`` logits (:func:`compute`); ``fused`` calls
``eksft.losses.fused.fused_head_loss`` on final hidden states and the output projection (:func:`compute_fused`) with
the same options; ``auto`` (default) is ``fused`` where :func:`fused_unsupported` finds nothing against it, else
``logits``. :func:`resolve_implementation` decides once per trainer.
"""

from __future__ import annotations

import torch

from eksft.losses import LOSSES, NEEDS_REFERENCE, LossResult
from eksft.losses.fused import FUSED_LOSSES, fused_head_loss

from .global_scope import global_eksft_loss

#: loss kwarg -> config field, per loss. The single place where config names meet loss-function names.
KWARG_FIELDS = {
    "sft": {"normalization": "normalization"},
    "dft": {"normalization": "normalization"},
    "eksft": {"rho": "rho", "lambda_entropy": "lambda_entropy", "lambda_kl": "lambda_kl", "selection": "selection",
              "scope": "scope", "normalization": "normalization", "variant": "variant",
              "entropy_unit": "entropy_unit"},
    "iw_sft": {"clip": "iw_clip", "normalization": "normalization"},
    "psft": {"epsilon_high": "psft_epsilon_high", "normalization": "normalization"},
    "asft": {"lambda_kl": "asft_lambda", "normalization": "normalization"},
    "sed_sft": {"lambda_sed": "sed_lambda", "k": "sed_k", "normalization": "normalization"},
    "gem": {"beta": "gem_beta", "normalization": "normalization"},
    "global_reg": {"lambda_entropy": "lambda_entropy", "lambda_kl": "lambda_kl", "entropy_unit": "entropy_unit",
                   "normalization": "normalization"},
    "random_mask": {"fraction": "random_mask_fraction", "lambda_entropy": "lambda_entropy", "lambda_kl": "lambda_kl",
                    "entropy_unit": "entropy_unit", "normalization": "normalization"},
}  # fmt: skip


def needs_reference(args) -> bool:
    return args.loss_type in NEEDS_REFERENCE


def loss_kwargs(args, name: str | None = None) -> dict:
    """The configured options of loss ``name`` (default ``args.loss_type``), as that function's keyword arguments."""
    return {kw: getattr(args, field) for kw, field in KWARG_FIELDS[name or args.loss_type].items()}


def fused_unsupported(args) -> str | None:
    """Why the fused head cannot run this config (None: it can). Model-side reasons (LoRA on lm_head) are found
    by ``eksft.models.lm_head_parts`` once the model exists (trainer.py)."""
    if args.loss_type not in FUSED_LOSSES:
        return f"loss_type={args.loss_type!r} has no fused implementation (fused: {', '.join(FUSED_LOSSES)})"
    if args.loss_type == "eksft" and args.variant != "paper":
        return "variant='official' is not supported by the fused head"
    if args.loss_type == "eksft" and args.scope == "global":
        return "scope='global' gathers statistics from full logits (global_scope.py)"
    return None


def resolve_implementation(args) -> str:
    """'logits' or 'fused' for this config: ``auto`` falls back to logits where the fused head does not apply;
    an explicit ``fused`` that cannot run is an error naming the reason."""
    if args.loss_implementation == "logits":
        return "logits"
    reason = fused_unsupported(args)
    if reason is None:
        return "fused"
    if args.loss_implementation == "fused":
        raise ValueError(f"EKSFTConfig.loss_implementation='fused': {reason}; set loss_implementation: auto "
                         "(falls back to the logits path) or logits.")  # fmt: skip
    return "logits"


def _call(args, name, *, num_items_in_batch, position_ids, tau, seed) -> dict:
    """The loss's keyword arguments: config options plus the per-batch ones (shared by both paths)."""
    kw = loss_kwargs(args, name)
    kw.update(num_items_in_batch=num_items_in_batch, position_ids=position_ids)
    if name == "sed_sft":
        kw["tau"] = tau
    if name == "random_mask":
        kw["seed"] = seed
    return kw


def compute(
    args, logits: torch.Tensor, labels: torch.Tensor, *, ref_logits=None, old_logps=None, tau=None,
    num_items_in_batch=None, position_ids=None, seed: int = 0, loss_type: str | None = None,
) -> LossResult:  # fmt: skip
    """Call the configured loss on one micro-batch. ``loss_type`` overrides ``args.loss_type`` (PSFT's eval)."""
    name = loss_type or args.loss_type
    kw = _call(args, name, num_items_in_batch=num_items_in_batch, position_ids=position_ids, tau=tau, seed=seed)
    extra = ()
    if name in NEEDS_REFERENCE:
        if ref_logits is None:
            raise RuntimeError(f"loss_type={name!r} needs reference logits but none were computed (trainer bug).")
        extra = (ref_logits,)
    if name == "psft":
        extra = (old_logps,)
    if name == "eksft" and kw["scope"] == "global":
        kw.pop("scope")
        return global_eksft_loss(logits, labels, *extra, **kw)
    return LOSSES[name](logits, labels, *extra, **kw)


def compute_fused(
    args, hidden: torch.Tensor, head, labels: torch.Tensor, *, ref_hidden=None, ref_head=None, tau=None,
    num_items_in_batch=None, position_ids=None, seed: int = 0,
) -> LossResult:  # fmt: skip
    """The configured loss from final hidden states: ``fused_head_loss`` with the options :func:`compute` passes.
    ``head`` / ``ref_head`` are ``eksft.models.LMHead`` (weights already gathered under ZeRO-3 / FSDP)."""
    name = args.loss_type
    kw = _call(args, name, num_items_in_batch=num_items_in_batch, position_ids=position_ids, tau=tau, seed=seed)
    ref = ()
    if name in NEEDS_REFERENCE:
        if ref_hidden is None or ref_head is None:
            raise RuntimeError(f"loss_type={name!r} needs reference hidden states but none were computed "
                               "(trainer bug).")  # fmt: skip
        ref = (ref_hidden, ref_head.weight)
    return fused_head_loss(name, hidden, head.weight, labels, *ref, **head.head_kwargs(ref_head), **kw)


def validate(args) -> None:
    """Run the configured loss once on a 1x3x5 dummy batch so a bad hyper-parameter fails before any model loads;
    the loss's own message is re-raised with the config field name."""
    resolve_implementation(args)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 3, 5, generator=g)
    labels = torch.tensor([[-100, 1, 2]])
    try:
        compute(args, logits, labels, ref_logits=torch.randn(1, 3, 5, generator=g),
                old_logps=torch.zeros(1, 3), tau=args.sed_tau if args.sed_tau is not None else 0.5)  # fmt: skip
    except ValueError as e:
        fields = ", ".join(f"{kw} = EKSFTConfig.{f}" for kw, f in KWARG_FIELDS[args.loss_type].items() if kw in str(e))
        raise ValueError(f"invalid loss option for loss_type={args.loss_type!r}: {e} ({fields or 'see --help'})") from e
