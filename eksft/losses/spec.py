"""What the rest of eksft needs to know about each loss, in one table: :data:`SPECS`.

Every consumer reads this table and nothing else: the trainer's seam (which config fields become which keyword
arguments, which extra inputs to compute), the fused head (whether and how it serves the loss), ``eksft losses``
and the tests. Adding a loss = its function, its row here, its row in docs/losses.md, its tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .ablations import global_reg_loss, random_mask_loss
from .baselines import asft_loss, dft_loss, gem_loss, iw_sft_loss, psft_loss, sft_loss
from .eaft import eaft_loss
from .eksft import eksft_loss
from .sed_sft import sed_sft_loss
from .types import LossResult


@dataclass(frozen=True)
class LossSpec:
    """One loss: its function and what a caller must give it.

    Attributes:
        fn: ``fn(logits, labels[, third], **options)`` on unshifted ``(B, T, V)`` logits.
        fields: keyword argument of ``fn`` -> ``EKSFTConfig`` field that sets it.
        third: the third positional input, if any: ``"ref_logits"`` (the frozen reference's logits for the same
            batch) or ``"old_logps"`` (``(B, T)`` label log-probs under the policy when the data batch was drawn).
        per_batch: keyword inputs the trainer supplies per micro-batch: ``"tau"`` (SED-SFT's calibrated threshold),
            ``"seed"`` (random_mask's per-step draw).
        fused: how ``fused_head_loss`` serves it: ``"rows"`` (one pass, the function itself on chunks of targets),
            ``"planned"`` (two passes: statistics of every target, then the gradient), None (logits path only).
        fused_options: option -> the values the fused head supports; any other value runs on the logits path.
    """

    fn: Callable[..., LossResult]
    fields: dict[str, str]
    third: str | None = None
    per_batch: tuple[str, ...] = ()
    fused: str | None = None
    fused_options: dict[str, tuple] = field(default_factory=dict)

    @property
    def needs_reference(self) -> bool:
        return self.third == "ref_logits"


_N = {"normalization": "normalization"}
_REG = {"lambda_entropy": "lambda_entropy", "lambda_kl": "lambda_kl", "entropy_unit": "entropy_unit", **_N}

#: ``loss_type`` -> :class:`LossSpec`. The only table; nothing registers into it.
SPECS = {
    "sft": LossSpec(sft_loss, _N, fused="rows"),
    "eksft": LossSpec(
        eksft_loss,
        {"rho": "rho", "selection": "selection", "scope": "scope", "variant": "variant", **_REG},
        third="ref_logits",
        fused="planned",
        fused_options={"variant": ("paper",), "scope": ("micro_batch", "sequence")},
    ),
    "dft": LossSpec(dft_loss, _N, fused="rows"),
    "iw_sft": LossSpec(iw_sft_loss, {"clip": "iw_clip", **_N}, third="ref_logits"),
    "psft": LossSpec(psft_loss, {"epsilon_high": "psft_epsilon_high", **_N}, third="old_logps"),
    "asft": LossSpec(asft_loss, {"lambda_kl": "asft_lambda", **_N}, third="ref_logits", fused="rows"),
    "sed_sft": LossSpec(
        sed_sft_loss, {"lambda_sed": "sed_lambda", "k": "sed_k", **_N}, per_batch=("tau",), fused="rows"
    ),
    "gem": LossSpec(gem_loss, {"beta": "gem_beta", **_N}, fused="rows"),
    "eaft": LossSpec(
        eaft_loss,
        {"alpha": "eaft_alpha", "entropy": "eaft_entropy", "topk": "eaft_topk", "normalizer": "eaft_normalizer", **_N},
        fused="rows",
    ),
    "global_reg": LossSpec(global_reg_loss, _REG, third="ref_logits", fused="rows"),
    "random_mask": LossSpec(
        random_mask_loss,
        {"fraction": "random_mask_fraction", **_REG},
        third="ref_logits",
        per_batch=("seed",),
        fused="planned",
    ),
}


def fused_refusal(loss_type: str, options: dict) -> str | None:
    """Why ``fused_head_loss`` cannot compute ``loss_type`` with ``options`` (None: it can). The one place this is
    decided: the trainer asks it once per run, ``fused_head_loss`` asks it to validate its arguments."""
    spec = SPECS[loss_type]
    if spec.fused is None:
        fused = ", ".join(name for name, s in SPECS.items() if s.fused)
        return f"loss_type={loss_type!r} has no fused implementation (fused: {fused})"
    for option, supported in spec.fused_options.items():
        if option in options and options[option] not in supported:
            return (
                f"{option}={options[option]!r} is not supported by the fused head for {loss_type} "
                f"(supported: {', '.join(map(repr, supported))})"
            )
    return None
