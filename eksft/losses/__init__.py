"""``eksft.losses``: one pure function per method, HF conventions (unshifted ``(B, T, V)`` logits and ``(B, T)``
labels, ``-100`` ignored), fp32 statistics, a :class:`LossResult` back. Formulas and citations: docs/losses.md.
What each loss needs (reference, extra inputs, config fields, fused support): the one table ``spec.SPECS``; the loss
a trainer runs, bound once to its config: ``spec.BoundLoss``.
"""

from .ablations import global_reg_loss, random_mask_loss
from .baselines import asft_loss, dft_loss, gem_loss, iw_sft_loss, psft_loss, sft_loss
from .eaft import eaft_loss
from .eksft import EksftPlan, eksft_loss, plan_eksft
from .sed_sft import calibrate_sed_tau, sed_sft_loss, topk_mass
from .spec import FUSED_LOSSES, SPECS, BoundLoss, LossSpec, eksft_head_loss, fused_head_loss, fused_refusal
from .targets import LossResult, target_logprobs

#: ``loss_type`` name -> loss function (``SPECS[name].fn``).
LOSSES = {name: spec.fn for name, spec in SPECS.items()}

__all__ = [
    "LOSSES",
    "SPECS",
    "LossSpec",
    "BoundLoss",
    "FUSED_LOSSES",
    "fused_head_loss",
    "eksft_head_loss",
    "fused_refusal",
    "LossResult",
    "EksftPlan",
    "plan_eksft",
    "target_logprobs",
    "topk_mass",
    "calibrate_sed_tau",
    *(f.__name__ for f in LOSSES.values()),
]
