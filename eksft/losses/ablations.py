"""Ablations the paper reports (docs/method.md): global regularisation (Appendix B.2) and random masking
(Appendix H). Masking-only, no-entropy and no-KL ablations are ``eksft_loss`` with a lambda set to 0.
"""

from __future__ import annotations

import torch

from .baselines import prepare
from .eksft import empty_result
from .selection import random_select
from .tokens import (
    check_fraction,
    check_nonnegative,
    denominator,
    entropy_from_logprobs,
    kl_from_logprobs,
    log_softmax32,
    mean_or_zero,
)
from .types import LossResult


def _stats(logits, ref_logits, t):
    logz = log_softmax32(t.rows)
    ref_logz = log_softmax32(ref_logits[:, :-1][t.valid[:, 1:]]).detach()
    logp = logz.gather(-1, t.tokens[:, None]).squeeze(-1)
    return logp, entropy_from_logprobs(logz), kl_from_logprobs(logz, ref_logz)


def masked_objective(logp, h, kl, m, lambda_entropy, lambda_kl, normalization, num_items, n):
    """CE over the kept targets, entropy bonus and KL penalty over ``m`` — the EKSFT objective for a given mask."""
    keep = ~m
    d_ce = denominator(int(keep.sum()), normalization, num_items, n)
    d_reg = denominator(int(m.sum()), normalization, num_items, n)
    return (-logp[keep]).sum() / d_ce - lambda_entropy * h[m].sum() / d_reg + lambda_kl * kl[m].sum() / d_reg


def global_reg_loss(
    logits, labels, ref_logits, *, lambda_entropy=0.05, lambda_kl=0.05, normalization="mean", ignore_index=-100,
    num_items_in_batch=None, position_ids=None,
) -> LossResult:  # fmt: skip
    """Global regularisation: CE on every target, entropy bonus and KL penalty on every target (Appendix B.2)."""
    check_nonnegative(lambda_entropy=lambda_entropy, lambda_kl=lambda_kl)
    t = prepare(logits, labels, ignore_index, normalization, ref_logits)
    if t.n == 0:
        return empty_result(logits, labels)
    logp, h, kl = _stats(logits, ref_logits, t)
    d = denominator(t.n, normalization, num_items_in_batch, t.n)
    loss = ((-logp).sum() - lambda_entropy * h.sum() + lambda_kl * kl.sum()) / d
    metrics = {
        "loss": float(loss.detach()), "ce": float(-logp.detach().mean()), "entropy_term": float(h.detach().mean()),
        "kl_term": float(kl.detach().mean()), "entropy_mean": float(h.detach().mean()),
        "kl_mean": float(kl.detach().mean()), "masked_fraction": 0.0, "num_targets": float(t.n),
    }  # fmt: skip
    return LossResult(loss=loss, metrics=metrics, mask=t.scatter(torch.zeros(t.n, dtype=torch.bool, device=logp.device)))


def random_mask_loss(
    logits, labels, ref_logits, *, fraction=0.1, seed=0, lambda_entropy=0.05, lambda_kl=0.05, normalization="mean",
    ignore_index=-100, num_items_in_batch=None, position_ids=None,
) -> LossResult:  # fmt: skip
    """Random masking (Appendix H): drop exactly ceil(fraction·N) uniformly random targets from CE (reproducible
    from ``seed``; the trainer passes a per-step seed) and apply EKSFT's regularisers on the dropped set."""
    check_fraction("fraction", fraction)
    check_nonnegative(lambda_entropy=lambda_entropy, lambda_kl=lambda_kl)
    t = prepare(logits, labels, ignore_index, normalization, ref_logits)
    if t.n == 0:
        return empty_result(logits, labels)
    logp, h, kl = _stats(logits, ref_logits, t)
    m = random_select(t.n, fraction, seed, logp.device)
    loss = masked_objective(logp, h, kl, m, lambda_entropy, lambda_kl, normalization, num_items_in_batch, t.n)
    hd, kd, keep = h.detach(), kl.detach(), ~m
    metrics = {
        "loss": float(loss.detach()), "ce": mean_or_zero(-logp.detach()[keep]),
        "entropy_term": mean_or_zero(hd[m]), "kl_term": mean_or_zero(kd[m]),
        "masked_fraction": float(m.float().mean()), "entropy_masked_mean": mean_or_zero(hd[m]),
        "entropy_unmasked_mean": mean_or_zero(hd[keep]), "kl_masked_mean": mean_or_zero(kd[m]),
        "kl_unmasked_mean": mean_or_zero(kd[keep]), "entropy_mean": float(hd.mean()), "kl_mean": float(kd.mean()),
        "num_targets": float(t.n),
    }  # fmt: skip
    return LossResult(loss=loss, metrics=metrics, mask=t.scatter(m))

