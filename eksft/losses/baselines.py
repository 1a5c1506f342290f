"""The comparison losses of the paper (docs/losses.md), per valid target j with p = p_{j-1},
y = u_j. Each returns a :class:`LossResult`; none of them masks tokens, so ``.mask`` is ``None``.
"""

from __future__ import annotations

import torch

from .checks import NonFiniteError, check_choice, check_inputs, check_nonnegative
from .targets import (
    NORMALIZATIONS,
    LossResult,
    Targets,
    denominator,
    entropy_from_logprobs,
    gather_targets,
    log_probs,
    log_softmax32,
    upcast,
    zero_loss,
)


def prepare(logits, labels, ignore_index, normalization, ref_logits=None, position_ids=None, ref_name="ref_logits"):
    check_choice("normalization", normalization, NORMALIZATIONS)
    check_inputs(logits, labels, ignore_index, ref_logits, ref_name=ref_name)
    return gather_targets(logits, labels, ignore_index, position_ids)


def finish(
    per_token: torch.Tensor, logz: torch.Tensor, logp: torch.Tensor, t: Targets, normalization, num_items, **extra
):
    """Normalise a ``(N,)`` per-token loss once (see ``targets.denominator``) and attach the common metrics."""
    loss = per_token.sum() / denominator(t.n, normalization, num_items, t.n)
    metrics = {
        "loss": float(loss.detach()),
        "ce": float(-logp.detach().mean()),
        "entropy_mean": float(entropy_from_logprobs(logz.detach()).mean()),
        "num_targets": float(t.n),
    }
    metrics.update({k: float(v) for k, v in extra.items()})
    return LossResult(loss=loss, metrics=metrics)


def empty(logits, *names) -> LossResult:
    return LossResult(
        loss=zero_loss(logits), metrics={k: 0.0 for k in ("loss", "ce", "entropy_mean", "num_targets", *names)}
    )


def sft_loss(logits, labels, *, normalization="mean", ignore_index=-100, num_items_in_batch=None, position_ids=None):
    """Plain SFT: per-token −log p(y)."""
    t = prepare(logits, labels, ignore_index, normalization)
    if t.n == 0:
        return empty(logits)
    logz, logp = log_probs(t.rows, t.tokens)
    return finish(-logp, logz, logp, t, normalization, num_items_in_batch)


def dft_loss(logits, labels, *, normalization="mean", ignore_index=-100, num_items_in_batch=None, position_ids=None):
    """DFT (Wu et al. 2025, "On the Generalization of SFT"): per-token −sg(p(y))·log p(y), exponent 1."""
    t = prepare(logits, labels, ignore_index, normalization)
    if t.n == 0:
        return empty(logits)
    logz, logp = log_probs(t.rows, t.tokens)
    return finish(-logp.detach().exp() * logp, logz, logp, t, normalization, num_items_in_batch)


def iw_sft_loss(
    logits,
    labels,
    ref_logits,
    *,
    clip=16.0,
    normalization="mean",
    ignore_index=-100,
    num_items_in_batch=None,
    position_ids=None,
):
    """IW-SFT (Qin & Springenberg 2025): −w_i·log p(y), one detached weight per sequence i,
    w_i = clip(exp(mean_{j∈i}[log π_θ(y_j) − log π_ref(y_j)]), 0, clip)."""
    check_nonnegative(clip=clip)
    t = prepare(logits, labels, ignore_index, normalization, ref_logits, position_ids)
    if t.n == 0:
        return empty(logits, "weight_mean", "weight_max")
    logz, logp = log_probs(t.rows, t.tokens)
    ref_rows = ref_logits[:, :-1][t.valid[:, 1:]]
    ref_logp = log_probs(ref_rows, t.tokens)[1].detach()
    _, inverse, counts = torch.unique(t.seq, return_inverse=True, return_counts=True)
    diff = torch.zeros(counts.numel(), dtype=logp.dtype, device=logp.device).index_add_(
        0, inverse, (logp.detach() - ref_logp)
    )
    w_seq = (diff / counts).exp().clamp(0.0, clip)  # (S,)
    w = w_seq[inverse]
    return finish(
        -w * logp, logz, logp, t, normalization, num_items_in_batch, weight_mean=w_seq.mean(), weight_max=w_seq.max()
    )


def psft_loss(
    logits,
    labels,
    old_logps,
    *,
    epsilon_high=0.28,
    normalization="mean",
    ignore_index=-100,
    num_items_in_batch=None,
    position_ids=None,
):
    """Proximal SFT (Zhu et al. 2025): per-token −min(r, 1 + ε_high), r = π_θ(y) / π_old(y).

    ``old_logps`` is ``(B, T)``, aligned with ``labels``: the log-probability of each label under the policy as it
    was when the data batch was drawn (``eksft.losses.target_logprobs``). With one update per batch r ≡ 1 and the
    gradient is exactly SFT's.
    """
    check_nonnegative(epsilon_high=epsilon_high)
    if not isinstance(old_logps, torch.Tensor) or old_logps.shape != labels.shape:
        raise ValueError(
            f"`old_logps` must be a (B, T) tensor aligned with labels {tuple(labels.shape)}; "
            "compute it with eksft.losses.target_logprobs(old_logits, labels)."
        )
    t = prepare(logits, labels, ignore_index, normalization)
    if t.n == 0:
        return empty(logits, "ratio_mean", "clip_fraction")
    old = upcast(old_logps[t.valid]).detach()
    if not bool(torch.isfinite(old).all()):
        raise NonFiniteError("`old_logps` contains NaN or inf at valid label positions.", "old_logps")
    logz, logp = log_probs(t.rows, t.tokens)
    ratio = (logp - old).exp()
    clipped = ratio.detach() > 1.0 + epsilon_high
    per_token = -torch.minimum(ratio, torch.full_like(ratio, 1.0 + epsilon_high))
    return finish(
        per_token,
        logz,
        logp,
        t,
        normalization,
        num_items_in_batch,
        ratio_mean=ratio.detach().mean(),
        clip_fraction=clipped.float().mean(),
    )


def asft_loss(
    logits,
    labels,
    ref_logits,
    *,
    lambda_kl=0.1,
    normalization="mean",
    ignore_index=-100,
    num_items_in_batch=None,
    position_ids=None,
):
    """Anchored SFT: DFT plus λ·KL(q ‖ p) over the full vocabulary (reference first, the opposite of EKSFT's KL)."""
    check_nonnegative(lambda_kl=lambda_kl)
    t = prepare(logits, labels, ignore_index, normalization, ref_logits)
    if t.n == 0:
        return empty(logits, "kl_ref_policy")
    logz, logp = log_probs(t.rows, t.tokens)
    ref_logz = log_softmax32(ref_logits[:, :-1][t.valid[:, 1:]]).detach()
    kl_qp = (ref_logz.exp() * (ref_logz - logz)).sum(-1)
    per_token = -logp.detach().exp() * logp + lambda_kl * kl_qp
    return finish(per_token, logz, logp, t, normalization, num_items_in_batch, kl_ref_policy=kl_qp.detach().mean())


def gem_loss(
    logits, labels, *, beta=0.7, normalization="mean", ignore_index=-100, num_items_in_batch=None, position_ids=None
):
    """GEM (Li et al. 2025): −log p(y) + Σ_v sg(s_v)·log p_v with s = softmax(z / β); the logit gradient is s − e_y."""
    if not (isinstance(beta, (int, float)) and beta > 0):
        raise ValueError(f"`beta` must be > 0, got {beta!r}.")
    t = prepare(logits, labels, ignore_index, normalization)
    if t.n == 0:
        return empty(logits)
    logz, logp = log_probs(t.rows, t.tokens)
    s = torch.softmax(upcast(t.rows.detach()) / beta, dim=-1)
    per_token = -logp + (s * logz).sum(-1)
    return finish(per_token, logz, logp, t, normalization, num_items_in_batch)
