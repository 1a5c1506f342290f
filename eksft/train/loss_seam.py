"""The trainer's one seam to ``eksft.losses``: config fields -> loss keyword arguments, and the call itself.

No loss maths here: this file maps names and dispatches. ``loss_implementation`` picks the path: ``logits`` calls
the functions of ``eksft.losses.LOSSES`` on full ``(B, T, V)`` logits; ``fused`` (``eksft.losses.fused``, computing
the same losses from final hidden states) is refused with a clear error until it is wired in here.
"""

from __future__ import annotations

import importlib.util

import torch

from eksft.losses import LOSSES, NEEDS_REFERENCE, LossResult

from .global_scope import global_eksft_loss

#: loss kwarg -> config field, per loss. The single place where config names meet loss-function names.
KWARG_FIELDS = {
    "sft": {"normalization": "normalization"},
    "dft": {"normalization": "normalization"},
    "eksft": {"rho": "rho", "lambda_entropy": "lambda_entropy", "lambda_kl": "lambda_kl", "selection": "selection",
              "scope": "scope", "normalization": "normalization", "variant": "variant"},
    "iw_sft": {"clip": "iw_clip", "normalization": "normalization"},
    "psft": {"epsilon_high": "psft_epsilon_high", "normalization": "normalization"},
    "asft": {"lambda_kl": "asft_lambda", "normalization": "normalization"},
    "sed_sft": {"lambda_sed": "sed_lambda", "k": "sed_k", "normalization": "normalization"},
    "gem": {"beta": "gem_beta", "normalization": "normalization"},
    "global_reg": {"lambda_entropy": "lambda_entropy", "lambda_kl": "lambda_kl", "normalization": "normalization"},
    "random_mask": {"fraction": "random_mask_fraction", "lambda_entropy": "lambda_entropy", "lambda_kl": "lambda_kl",
                    "normalization": "normalization"},
}  # fmt: skip


def needs_reference(args) -> bool:
    return args.loss_type in NEEDS_REFERENCE


def loss_kwargs(args) -> dict:
    return {kw: getattr(args, name) for kw, name in KWARG_FIELDS[args.loss_type].items()}


def check_implementation(args) -> None:
    if args.loss_implementation == "logits":
        return
    if importlib.util.find_spec("eksft.losses.fused") is None:
        raise ValueError(
            "EKSFTConfig.loss_implementation='fused' needs eksft.losses.fused, which is not installed in this "
            "checkout; set loss_implementation: logits."
        )
    raise ValueError(
        "EKSFTConfig.loss_implementation='fused': eksft.losses.fused exists but the trainer does not call it yet "
        "(see eksft/train/loss_seam.py); set loss_implementation: logits."
    )


def compute(
    args, logits: torch.Tensor, labels: torch.Tensor, *, ref_logits=None, old_logps=None, tau=None,
    num_items_in_batch=None, position_ids=None, seed: int = 0, loss_type: str | None = None,
) -> LossResult:  # fmt: skip
    """Call the configured loss on one micro-batch. ``loss_type`` overrides ``args.loss_type`` (PSFT's eval)."""
    name = loss_type or args.loss_type
    kw = {kw: getattr(args, f) for kw, f in KWARG_FIELDS[name].items()}
    kw.update(num_items_in_batch=num_items_in_batch, position_ids=position_ids)
    extra = ()
    if name in NEEDS_REFERENCE:
        if ref_logits is None:
            raise RuntimeError(f"loss_type={name!r} needs reference logits but none were computed (trainer bug).")
        extra = (ref_logits,)
    if name == "psft":
        extra = (old_logps,)
    if name == "sed_sft":
        kw["tau"] = tau
    if name == "random_mask":
        kw["seed"] = seed
    if name == "eksft" and kw["scope"] == "global":
        kw.pop("scope")
        return global_eksft_loss(logits, labels, *extra, **kw)
    return LOSSES[name](logits, labels, *extra, **kw)


def validate(args) -> None:
    """Run the configured loss once on a 1x3x5 dummy batch so a bad hyper-parameter fails before any model loads;
    the loss's own message is re-raised with the config field name."""
    check_implementation(args)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 3, 5, generator=g)
    labels = torch.tensor([[-100, 1, 2]])
    try:
        compute(args, logits, labels, ref_logits=torch.randn(1, 3, 5, generator=g),
                old_logps=torch.zeros(1, 3), tau=args.sed_tau if args.sed_tau is not None else 0.5)  # fmt: skip
    except ValueError as e:
        fields = ", ".join(f"{kw} = EKSFTConfig.{f}" for kw, f in KWARG_FIELDS[args.loss_type].items() if kw in str(e))
        raise ValueError(f"invalid loss option for loss_type={args.loss_type!r}: {e} ({fields or 'see --help'})") from e
