"""Ablations the paper reports (docs/losses.md): global regularisation (Appendix B.2) and random masking
(Appendix H). Masking-only, no-entropy and no-KL ablations are ``eksft_loss`` with a lambda set to 0.
"""

from __future__ import annotations

import torch

from .baselines import prepare
from .checks import check_fraction, check_nonnegative
from .eksft import LAMBDA_ENTROPY, LAMBDA_KL, EksftPlan, empty_result, paper_statistics
from .selection import random_select
from .targets import LossResult, denominator, entropy_scale, mean_or_zero


def global_reg_loss(
    logits,
    labels,
    ref_logits,
    *,
    lambda_entropy=LAMBDA_ENTROPY,
    lambda_kl=LAMBDA_KL,
    entropy_unit="normalized",
    normalization="mean",
    ignore_index=-100,
    num_items_in_batch=None,
    position_ids=None,
) -> LossResult:
    """Global regularisation: CE on every target, entropy bonus and KL penalty on every target (Appendix B.2).
    ``lambda_entropy`` is per unit of ``entropy_unit`` (H / ln V by default, as in ``eksft_loss``)."""
    check_nonnegative(lambda_entropy=lambda_entropy, lambda_kl=lambda_kl)
    scale = entropy_scale(entropy_unit, logits.shape[-1])  # lambda_entropy is per unit of H * scale
    t = prepare(logits, labels, ignore_index, normalization, ref_logits)
    if t.n == 0:
        return empty_result(logits, labels, GLOBAL_REG_METRICS)
    logp, h, kl = paper_statistics(t, ref_logits)
    d = denominator(t.n, normalization, num_items_in_batch, t.n)
    loss = ((-logp).sum() - lambda_entropy * scale * h.sum() + lambda_kl * kl.sum()) / d
    metrics = {
        "loss": float(loss.detach()),
        "ce": float(-logp.detach().mean()),
        "entropy_term": float(h.detach().mean()) * scale,
        "kl_term": float(kl.detach().mean()),
        "entropy_mean": float(h.detach().mean()),
        "kl_mean": float(kl.detach().mean()),
        "masked_fraction": 0.0,
        "lambda_entropy_per_nat": lambda_entropy * scale,
        "num_targets": float(t.n),
    }
    return LossResult(
        loss=loss, metrics=metrics, mask=t.scatter(torch.zeros(t.n, dtype=torch.bool, device=logp.device))
    )


GLOBAL_REG_METRICS = (
    "loss",
    "ce",
    "entropy_term",
    "kl_term",
    "entropy_mean",
    "kl_mean",
    "masked_fraction",
    "lambda_entropy_per_nat",
    "num_targets",
)
RANDOM_MASK_METRICS = (
    "loss",
    "ce",
    "entropy_term",
    "kl_term",
    "lambda_entropy_per_nat",
    "masked_fraction",
    "entropy_masked_mean",
    "entropy_unmasked_mean",
    "kl_masked_mean",
    "kl_unmasked_mean",
    "entropy_mean",
    "kl_mean",
    "num_targets",
)


def random_mask_loss(
    logits,
    labels,
    ref_logits,
    *,
    fraction=0.1,
    seed=0,
    lambda_entropy=LAMBDA_ENTROPY,
    lambda_kl=LAMBDA_KL,
    entropy_unit="normalized",
    normalization="mean",
    ignore_index=-100,
    num_items_in_batch=None,
    position_ids=None,
) -> LossResult:
    """Random masking (Appendix H): drop exactly ceil(fraction·N) uniformly random targets from CE (reproducible
    from ``seed``; the trainer passes a per-step seed) and apply EKSFT's regularisers on the dropped set
    (``lambda_entropy`` per unit of ``entropy_unit``, as in ``eksft_loss``)."""
    t = prepare(logits, labels, ignore_index, normalization, ref_logits)
    if t.n == 0:  # no plan to check the options: check them here
        _check_random_mask(fraction, lambda_entropy, lambda_kl, entropy_unit, logits.shape[-1])
        return empty_result(logits, labels, RANDOM_MASK_METRICS)
    logp, h, kl = paper_statistics(t, ref_logits)
    plan = plan_random_mask(
        logp,
        h,
        kl,
        fraction=fraction,
        seed=seed,
        lambda_entropy=lambda_entropy,
        lambda_kl=lambda_kl,
        entropy_unit=entropy_unit,
        vocab_size=logits.shape[-1],
        normalization=normalization,
        num_items_in_batch=num_items_in_batch,
    )
    return plan.result(t, logp, h, kl)


def _check_random_mask(fraction, lambda_entropy, lambda_kl, entropy_unit, vocab_size) -> float:
    check_fraction("fraction", fraction)
    check_nonnegative(lambda_entropy=lambda_entropy, lambda_kl=lambda_kl)
    return entropy_scale(entropy_unit, vocab_size)


def plan_random_mask(
    logp,
    h,
    kl,
    seq=None,
    *,
    fraction,
    seed,
    lambda_entropy,
    lambda_kl,
    entropy_unit,
    vocab_size,
    normalization,
    num_items_in_batch=None,
) -> EksftPlan:
    """Random masking's mask and coefficients from detached ``(N,)`` statistics, as an :class:`EksftPlan` (the
    seeded mask is both the entropy and the KL set), so the logits path and the fused head share it as they share
    :func:`plan_eksft` (whose signature it takes: ``seq`` is unused, the draw ignores sequences)."""
    scale = _check_random_mask(fraction, lambda_entropy, lambda_kl, entropy_unit, vocab_size)
    logp, h, kl = logp.detach(), h.detach(), kl.detach()
    n = logp.numel()
    m = random_select(n, fraction, seed, logp.device)
    keep = ~m
    d_ce = denominator(int(keep.sum()), normalization, num_items_in_batch, n)
    d_reg = denominator(int(m.sum()), normalization, num_items_in_batch, n)
    metrics = {
        "ce": mean_or_zero(-logp[keep]),
        "entropy_term": mean_or_zero(h[m]) * scale,
        "kl_term": mean_or_zero(kl[m]),
        "lambda_entropy_per_nat": lambda_entropy * scale,
        "masked_fraction": float(m.float().mean()),
        "entropy_masked_mean": mean_or_zero(h[m]),
        "entropy_unmasked_mean": mean_or_zero(h[keep]),
        "kl_masked_mean": mean_or_zero(kl[m]),
        "kl_unmasked_mean": mean_or_zero(kl[keep]),
        "entropy_mean": float(h.mean()),
        "kl_mean": float(kl.mean()),
        "num_targets": float(n),
    }
    return EksftPlan(m, m, m, m, m, d_ce, lambda_entropy * scale / d_reg, lambda_kl / d_reg, metrics)
