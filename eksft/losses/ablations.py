"""Ablations the paper reports (docs/losses.md): global regularisation (Appendix B.2) and random masking
(Appendix H). Masking-only, no-entropy and no-KL ablations are ``eksft_loss`` with a lambda set to 0.
"""

from __future__ import annotations

import torch

from .baselines import prepare
from .eksft import empty_result, paper_statistics
from .selection import random_select
from .tokens import check_fraction, check_nonnegative, denominator, entropy_scale, mean_or_zero
from .types import LossResult


def masked_objective(logp, h, kl, m, lambda_entropy, lambda_kl, normalization, num_items, n):
    """CE over the kept targets, entropy bonus and KL penalty over ``m`` — the EKSFT objective for a given mask
    (``lambda_entropy`` per nat of ``h``)."""
    keep = ~m
    d_ce = denominator(int(keep.sum()), normalization, num_items, n)
    d_reg = denominator(int(m.sum()), normalization, num_items, n)
    return (-logp[keep]).sum() / d_ce - lambda_entropy * h[m].sum() / d_reg + lambda_kl * kl[m].sum() / d_reg


def global_reg_loss(
    logits, labels, ref_logits, *, lambda_entropy=0.05, lambda_kl=0.05, entropy_unit="normalized",
    normalization="mean", ignore_index=-100, num_items_in_batch=None, position_ids=None,
) -> LossResult:  # fmt: skip
    """Global regularisation: CE on every target, entropy bonus and KL penalty on every target (Appendix B.2).
    ``lambda_entropy`` is per unit of ``entropy_unit`` (H / ln V by default, as in ``eksft_loss``)."""
    check_nonnegative(lambda_entropy=lambda_entropy, lambda_kl=lambda_kl)
    scale = entropy_scale(entropy_unit, logits.shape[-1])  # lambda_entropy is per unit of H * scale
    t = prepare(logits, labels, ignore_index, normalization, ref_logits)
    if t.n == 0:
        return empty_result(logits, labels)
    logp, h, kl = paper_statistics(t, ref_logits)
    d = denominator(t.n, normalization, num_items_in_batch, t.n)
    loss = ((-logp).sum() - lambda_entropy * scale * h.sum() + lambda_kl * kl.sum()) / d
    metrics = {
        "loss": float(loss.detach()), "ce": float(-logp.detach().mean()),
        "entropy_term": float(h.detach().mean()) * scale,
        "kl_term": float(kl.detach().mean()), "entropy_mean": float(h.detach().mean()),
        "kl_mean": float(kl.detach().mean()), "masked_fraction": 0.0, "lambda_entropy_per_nat": lambda_entropy * scale,
        "num_targets": float(t.n),
    }  # fmt: skip
    return LossResult(loss=loss, metrics=metrics, mask=t.scatter(torch.zeros(t.n, dtype=torch.bool, device=logp.device)))


def random_mask_loss(
    logits, labels, ref_logits, *, fraction=0.1, seed=0, lambda_entropy=0.05, lambda_kl=0.05,
    entropy_unit="normalized", normalization="mean", ignore_index=-100, num_items_in_batch=None, position_ids=None,
) -> LossResult:  # fmt: skip
    """Random masking (Appendix H): drop exactly ceil(fraction·N) uniformly random targets from CE (reproducible
    from ``seed``; the trainer passes a per-step seed) and apply EKSFT's regularisers on the dropped set
    (``lambda_entropy`` per unit of ``entropy_unit``, as in ``eksft_loss``)."""
    check_fraction("fraction", fraction)
    check_nonnegative(lambda_entropy=lambda_entropy, lambda_kl=lambda_kl)
    scale = entropy_scale(entropy_unit, logits.shape[-1])
    t = prepare(logits, labels, ignore_index, normalization, ref_logits)
    if t.n == 0:
        return empty_result(logits, labels)
    logp, h, kl = paper_statistics(t, ref_logits)
    m = random_select(t.n, fraction, seed, logp.device)
    loss = masked_objective(logp, h, kl, m, lambda_entropy * scale, lambda_kl, normalization, num_items_in_batch,
                            t.n)  # fmt: skip
    hd, kd, keep = h.detach(), kl.detach(), ~m
    metrics = {
        "loss": float(loss.detach()), "ce": mean_or_zero(-logp.detach()[keep]),
        "entropy_term": mean_or_zero(hd[m]) * scale, "kl_term": mean_or_zero(kd[m]),
        "lambda_entropy_per_nat": lambda_entropy * scale,
        "masked_fraction": float(m.float().mean()), "entropy_masked_mean": mean_or_zero(hd[m]),
        "entropy_unmasked_mean": mean_or_zero(hd[keep]), "kl_masked_mean": mean_or_zero(kd[m]),
        "kl_unmasked_mean": mean_or_zero(kd[keep]), "entropy_mean": float(hd.mean()), "kl_mean": float(kd.mean()),
        "num_targets": float(t.n),
    }  # fmt: skip
    return LossResult(loss=loss, metrics=metrics, mask=t.scatter(m))

