"""``eksft.losses``: one pure function per method, HF conventions (unshifted ``(B, T, V)`` logits and ``(B, T)``
labels, ``-100`` ignored), fp32 statistics, a :class:`LossResult` back. Formulas and citations: docs/losses.md.
"""

from .ablations import global_reg_loss, random_mask_loss
from .baselines import asft_loss, dft_loss, gem_loss, iw_sft_loss, psft_loss, sft_loss
from .eksft import EksftPlan, eksft_loss, plan_eksft
from .fused import eksft_head_loss, fused_head_loss
from .sed_sft import calibrate_sed_tau, sed_sft_loss, topk_mass
from .tokens import target_logprobs
from .types import LossResult

#: ``loss_type`` name -> loss function. The only lookup table; the trainer reads it, nothing registers into it.
LOSSES = {
    "sft": sft_loss,
    "eksft": eksft_loss,
    "dft": dft_loss,
    "iw_sft": iw_sft_loss,
    "psft": psft_loss,
    "asft": asft_loss,
    "sed_sft": sed_sft_loss,
    "gem": gem_loss,
    "global_reg": global_reg_loss,
    "random_mask": random_mask_loss,
}

#: Losses whose third positional argument is the frozen reference's logits.
NEEDS_REFERENCE = frozenset({"eksft", "iw_sft", "asft", "global_reg", "random_mask"})

__all__ = [
    "LOSSES", "NEEDS_REFERENCE", "LossResult", "EksftPlan", "plan_eksft", "target_logprobs", "topk_mass",
    "calibrate_sed_tau", *(f.__name__ for f in LOSSES.values()),
]  # fmt: skip
