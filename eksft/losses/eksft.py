"""EKSFT: Entropy-KL Selective Fine-Tuning (paper Algorithm 1, sections 4.1-4.3; formulas in docs/losses.md).

The loss is split in two so the logits path here and the fused head (``eksft.losses.fused``) share every decision:

1. :func:`plan_eksft` takes *detached* per-target statistics and returns the masks and per-target coefficients;
2. the caller forms ``loss = sum(ce_w * -logp) - sum(entropy_w * H) + sum(kl_w * KL)`` with gradients.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from .checks import check_choice, check_fraction, check_inputs, check_nonnegative
from .selection import LOCAL_SCOPES, SELECTIONS, combine, iou, official_select, paper_select
from .targets import (
    ENTROPY_UNITS,
    NORMALIZATIONS,
    LossResult,
    Targets,
    denominator,
    entropy_from_logprobs,
    entropy_scale,
    gather_targets,
    kl_from_logprobs,
    log_probs,
    log_softmax32,
    mean_or_zero,
    upcast,
    zero_loss,
)

VARIANTS = ("paper", "official")
#: The paper's hyper-parameters (section 4.1): the one place their defaults are written. ``EKSFTConfig``, the demo,
#: ``eksft probe`` and the ablations read them from here.
RHO = 0.2
LAMBDA_ENTROPY = 0.05
LAMBDA_KL = 0.05


@dataclass
class EksftPlan:
    """Masks and coefficients over the N valid targets (masks are ``(N,)`` bool).

    The objective is ``sum_{keep}(-logp) / ce_denominator - entropy_coef * sum_{entropy_set} H
    + kl_coef * sum_{kl_set} KL`` (:meth:`objective`); ``*_weight`` give the same as per-target coefficients, the
    form the fused head needs for its gradient.
    """

    mask: torch.Tensor  # taken out of cross-entropy (M)
    mask_entropy: torch.Tensor  # M_H
    mask_kl: torch.Tensor  # M_KL
    entropy_set: torch.Tensor  # where the entropy bonus applies (M for paper, M_H for official)
    kl_set: torch.Tensor  # where the KL penalty applies (M for paper, M_KL for official)
    ce_denominator: float
    entropy_coef: float  # lambda_H x entropy_scale (1/ln V when normalised) / denominator: per nat of H
    kl_coef: float  # lambda_KL / denominator
    metrics: dict[str, float]

    @property
    def keep(self) -> torch.Tensor:
        return ~self.mask

    @property
    def ce_weight(self) -> torch.Tensor:
        return self.keep.float() / self.ce_denominator

    @property
    def entropy_weight(self) -> torch.Tensor:
        return self.entropy_set.float() * self.entropy_coef

    @property
    def kl_weight(self) -> torch.Tensor:
        return self.kl_set.float() * self.kl_coef

    def part(self, rows: slice) -> EksftPlan:
        """The plan restricted to targets ``rows``, coefficients unchanged: under ``scope="global"`` one plan covers
        every process's targets and each process forms the objective of its own slice (eksft/losses/eksft_global.py).
        """
        return dataclasses.replace(
            self,
            mask=self.mask[rows],
            mask_entropy=self.mask_entropy[rows],
            mask_kl=self.mask_kl[rows],
            entropy_set=self.entropy_set[rows],
            kl_set=self.kl_set[rows],
            metrics=dict(self.metrics),
        )

    def result(self, t: Targets, logp: torch.Tensor, entropy: torch.Tensor, kl: torch.Tensor) -> LossResult:
        """The :class:`LossResult` of the logits path: :meth:`objective` with ``loss`` logged, the mask and the
        target log-probabilities scattered back to ``(B, T)`` over the targets ``t``."""
        loss = self.objective(logp, entropy, kl)
        self.metrics["loss"] = float(loss.detach())
        return LossResult(loss, self.metrics, mask=t.scatter(self.mask), target_logp=t.scatter(logp.detach().float()))

    def objective(self, logp: torch.Tensor, entropy: torch.Tensor, kl: torch.Tensor) -> torch.Tensor:
        """The loss from per-target statistics that carry gradients. Written as masked sums so that rho = 0 gives
        bit-for-bit the same value as ``sft_loss``."""
        ce = (-logp * self.keep.to(logp.dtype)).sum() / self.ce_denominator
        bonus = (entropy * self.entropy_set.to(entropy.dtype)).sum()
        penalty = (kl * self.kl_set.to(kl.dtype)).sum()
        return ce - self.entropy_coef * bonus + self.kl_coef * penalty


def validate_options(
    rho, lambda_entropy, lambda_kl, selection, scope, normalization, variant, entropy_unit="normalized"
) -> None:
    check_fraction("rho", rho)
    check_nonnegative(lambda_entropy=lambda_entropy, lambda_kl=lambda_kl)
    check_choice("selection", selection, SELECTIONS)
    check_choice("scope", scope, LOCAL_SCOPES)
    check_choice("normalization", normalization, NORMALIZATIONS)
    check_choice("variant", variant, VARIANTS)
    check_choice("entropy_unit", entropy_unit, ENTROPY_UNITS)
    if variant == "official" and entropy_unit != "normalized":
        raise ValueError(
            "`entropy_unit` must be 'normalized' with variant='official' (the authors' code divides the "
            "entropy by ln V, and its lambda rule tests that value against 0.5); use variant='paper' "
            "for entropy_unit='nats'."
        )


def plan_eksft(
    logp: torch.Tensor,
    entropy: torch.Tensor,
    kl: torch.Tensor,
    seq: torch.Tensor,
    *,
    rho: float,
    lambda_entropy: float,
    lambda_kl: float,
    selection: str,
    scope: str,
    normalization: str,
    variant: str,
    num_items_in_batch=None,
    vocab_size: int | None = None,
    entropy_unit: str = "normalized",
    kl_select: torch.Tensor | None = None,
) -> EksftPlan:
    """Select the masked targets and weight every term. Inputs are detached fp32 ``(N,)`` statistics.

    ``paper``: ``entropy`` = H_j and ``kl`` = KL_j of the row scoring target j.
    ``official``: ``entropy`` = H and ``kl`` = sum_v p_v (p_v - log q_v) of row j itself (the authors' off-by-one and
    penalty); ``kl_select`` = the true KL of that row, which selects M_KL (their ``calculate_kl_and_entropy``).
    ``entropy_unit``: ``normalized`` weights H / ln V (``vocab_size`` required), ``nats`` weights H.
    Options are taken as given: :func:`eksft_loss`, ``fused_head_loss`` and ``BoundLoss`` check them
    (:func:`validate_options`) before a plan is made.
    """
    logp, entropy, kl = upcast(logp.detach()), upcast(entropy.detach()), upcast(kl.detach())
    kl_sel = kl if kl_select is None else upcast(kl_select.detach())  # what M_KL is chosen by (true KL)
    n = logp.numel()
    groups = seq if scope == "sequence" else None
    select = paper_select if variant == "paper" else official_select
    m_h, thr_h = select(entropy, rho, groups)
    m_kl, thr_kl = select(kl_sel, rho, groups)
    m = combine(m_h, m_kl, selection)
    keep = ~m

    h_set, kl_set = (m, m) if variant == "paper" else (m_h, m_kl)
    h_scale = entropy_scale(entropy_unit, vocab_size)  # lambda_H is per unit of H * h_scale
    n_keep, n_h, n_kl = int(keep.sum()), int(h_set.sum()), int(kl_set.sum())

    # Term values (means over their sets, entropy in lambda_H's unit), used by the official lambda rule and logged.
    ce_term = float(-(logp[keep]).sum()) / max(n_keep, 1)
    entropy_term = float((entropy[h_set] * h_scale).sum()) / max(n_h, 1)
    kl_term = float(kl[kl_set].sum()) / max(n_kl, 1)

    lam_h, lam_kl = lambda_entropy, lambda_kl
    if variant == "official":  # their per-micro-step rule, from the base value each time (no compounding)
        lam_h = lambda_entropy * (1.05 if entropy_term < 0.5 else 0.95)
        lam_kl = lambda_kl * (1.05 if kl_term > 2.0 else 0.95)

    d_ce = denominator(n_keep, normalization, num_items_in_batch, n)
    d_h = denominator(n_h, normalization, num_items_in_batch, n)
    d_kl = denominator(n_kl, normalization, num_items_in_batch, n)

    metrics = {
        "ce": ce_term,
        "entropy_term": entropy_term,
        "kl_term": kl_term,
        "lambda_entropy": lam_h,
        "lambda_kl": lam_kl,
        "lambda_entropy_per_nat": lam_h * h_scale,
        "masked_fraction": (n - n_keep) / n,
        "entropy_masked_fraction": int(m_h.sum()) / n,
        "kl_masked_fraction": int(m_kl.sum()) / n,
        "iou_entropy_kl": iou(m_h, m_kl),
        "entropy_masked_mean": mean_or_zero(entropy[m]),
        "entropy_unmasked_mean": mean_or_zero(entropy[keep]),
        "kl_masked_mean": mean_or_zero(kl_sel[m]),
        "kl_unmasked_mean": mean_or_zero(kl_sel[keep]),
        "entropy_mean": mean_or_zero(entropy),
        "kl_mean": mean_or_zero(kl_sel),
        "entropy_threshold": thr_h,
        "kl_threshold": thr_kl,
        "num_targets": float(n),
    }
    return EksftPlan(m, m_h, m_kl, h_set, kl_set, d_ce, lam_h * h_scale / d_h, lam_kl / d_kl, metrics)


def paper_statistics(t: Targets, ref_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(logp_j, H_j, KL_j)`` of every valid target j, fp32, with gradients through the policy (docs/losses.md,
    notation); also used by ``scope="global"`` (eksft/losses/eksft_global.py), so both select on the same numbers."""
    logz, logp = log_probs(t.rows, t.tokens)  # (N, V), (N,) fp32
    ref_logz = log_softmax32(ref_logits[:, :-1][t.valid[:, 1:]]).detach()
    return logp, entropy_from_logprobs(logz), kl_from_logprobs(logz, ref_logz)


def eksft_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    ref_logits: torch.Tensor,
    *,
    rho: float = RHO,
    lambda_entropy: float = LAMBDA_ENTROPY,
    lambda_kl: float = LAMBDA_KL,
    selection: str = "union",
    scope: str = "micro_batch",
    normalization: str = "mean",
    variant: str = "paper",
    entropy_unit: str = "normalized",
    ignore_index: int = -100,
    num_items_in_batch=None,
    position_ids: torch.Tensor | None = None,
) -> LossResult:
    """EKSFT loss: L = L_CE(M̄) - λ_H·L_H(M) + λ_KL·L_KL(M), with M = Top-K(H, ρ) ∪ Top-K(KL, ρ).

    Units: L_KL is in nats; L_H is in ``entropy_unit``: ``normalized`` (default, H / ln V, V = ``logits.shape[-1]``)
    is the unit of the authors' code, in which the published λ_H = 0.05 was run; ``nats`` reads the paper's
    equations literally, an entropy bonus ln V times stronger at the same λ_H (about 11x at V = 151,936).

    Args:
        logits: ``(B, T, V)`` policy logits, unshifted. Gradients flow into these.
        labels: ``(B, T)`` token ids, ``ignore_index`` on prompt and padding. Unshifted.
        ref_logits: ``(B, T, V)`` frozen reference logits for the same batch (detached here).
        rho: share of valid targets selected by each statistic, in [0, 1]; 0 is plain SFT.
        lambda_entropy: weight of the entropy bonus on masked targets, per unit of ``entropy_unit``.
        lambda_kl: weight of the KL(policy || reference) penalty on masked targets.
        selection: ``union`` (paper), ``intersection``, ``entropy`` or ``kl``.
        scope: ``micro_batch`` (one top-k over the micro-batch, paper) or ``sequence`` (one per sequence).
        normalization: ``mean`` (each term over its own set, paper) or ``tokens`` (every term summed and divided by
            ``num_items_in_batch``, invariant to gradient accumulation with ``scope="sequence"``).
        variant: ``paper`` (the paper's equations) or ``official`` (the authors' code; see docs/losses.md).
        entropy_unit: ``normalized`` (H / ln V) or ``nats``; ``official`` requires ``normalized``.
        num_items_in_batch: valid targets in the whole optimiser step (``tokens`` normalisation only).
        position_ids: ``(B, T)``; for packed batches, sequences restart where it is 0 (used by ``scope="sequence"``).
    """
    validate_options(rho, lambda_entropy, lambda_kl, selection, scope, normalization, variant, entropy_unit)
    check_inputs(logits, labels, ignore_index, ref_logits)
    t = gather_targets(logits, labels, ignore_index, position_ids)
    if t.n == 0:
        return empty_result(logits, labels)

    kl_select = None
    if variant == "paper":
        logp, h_stat, kl_stat = paper_statistics(t, ref_logits)
    else:
        # Authors' code: statistics from row j (not j-1) at label position j; CE still scores target j with row j-1.
        logp = log_probs(t.rows, t.tokens)[1]
        same = log_softmax32(logits[t.valid])
        ref_same = log_softmax32(ref_logits[t.valid]).detach()
        h_stat = entropy_from_logprobs(same)
        p = same.exp()
        kl_stat = (p * (p - ref_same)).sum(-1)  # Σ p (p - log q): their penalty (= KL + H + Σp²)
        kl_select = kl_from_logprobs(same, ref_same)  # they *select* M_KL by the true KL of the same row

    plan = plan_eksft(
        logp,
        h_stat,
        kl_stat,
        t.seq,
        rho=rho,
        lambda_entropy=lambda_entropy,
        lambda_kl=lambda_kl,
        selection=selection,
        scope=scope,
        normalization=normalization,
        variant=variant,
        num_items_in_batch=num_items_in_batch,
        vocab_size=logits.shape[-1],
        entropy_unit=entropy_unit,
        kl_select=kl_select,
    )
    return plan.result(t, logp, h_stat, kl_stat)


EKSFT_METRICS = (
    "ce",
    "entropy_term",
    "kl_term",
    "lambda_entropy",
    "lambda_kl",
    "lambda_entropy_per_nat",
    "masked_fraction",
    "entropy_masked_fraction",
    "kl_masked_fraction",
    "iou_entropy_kl",
    "entropy_masked_mean",
    "entropy_unmasked_mean",
    "kl_masked_mean",
    "kl_unmasked_mean",
    "entropy_mean",
    "kl_mean",
    "entropy_threshold",
    "kl_threshold",
    "num_targets",
    "loss",
)


def empty_result(logits: torch.Tensor, labels: torch.Tensor, metric_names=EKSFT_METRICS) -> LossResult:
    """No valid target: a zero loss with zero gradient, every metric 0, nothing masked."""
    return LossResult(
        loss=zero_loss(logits),
        metrics={k: 0.0 for k in metric_names},
        mask=torch.zeros(labels.shape, dtype=torch.bool, device=labels.device),
    )
