"""The chunked passes behind :mod:`eksft.losses.fused` (issue 7; design in docs/fused_head.md).

Every block here is ``(chunk, V)`` at most: rows are projected ``chunk_size`` at a time, statistics are fp32, and
gradients w.r.t. the hidden rows, the weight and the bias are accumulated in fp32 as each block is done.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

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


def logit_transform(z: torch.Tensor, logit_scale: float | None, softcap: float | None) -> torch.Tensor:
    """``softcap * tanh(scale * z / softcap)``: Cohere-style ``logit_scale``, then Gemma-style soft-capping."""
    if logit_scale is not None:
        z = z * logit_scale
    if softcap is not None:
        z = torch.tanh(z / softcap) * softcap
    return z


@dataclass(frozen=True)
class Projection:
    """One model's output head, applied to ``(n, d)`` rows. All tensors detached."""

    weight: torch.Tensor  # (V, d)
    bias: torch.Tensor | None
    logit_scale: float | None
    softcap: float | None

    def linear(self, h: torch.Tensor) -> torch.Tensor:
        # The matmul runs in the weight's dtype, as in the model, so bf16 logits round exactly as on the logits path.
        return F.linear(h.to(self.weight.dtype), self.weight, self.bias).float()  # (n, V) fp32

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return logit_transform(self.linear(h), self.logit_scale, self.softcap)


class Grads:
    """fp32 gradient accumulators for the hidden rows, weight and bias (only those that need a gradient)."""

    def __init__(self, rows, weight, bias):
        def zeros(t):
            return torch.zeros(t.shape, dtype=torch.float32, device=t.device) if t is not None and t.requires_grad else None

        self.rows, self.weight, self.bias = zeros(rows), zeros(weight), zeros(bias)

    def add(self, idx, h: torch.Tensor, g: torch.Tensor, proj: Projection) -> None:
        """``g`` is the (n, V) fp32 gradient w.r.t. the linear output ``h @ W.T + b`` of rows ``idx``."""
        if self.rows is not None:  # like the logits path: the logits gradient meets W in the model dtype
            self.rows[idx] = (g.to(proj.weight.dtype) @ proj.weight).float()
        if self.weight is not None:  # fp32 accumulation over chunks (rounding each chunk to bf16 biases training)
            self.weight.addmm_(g.t(), h.float())
        if self.bias is not None:
            self.bias += g.sum(0)


class PrecomputedGrad(torch.autograd.Function):
    """Returns the loss computed in the forward; backward hands over the gradients computed there, scaled."""

    @staticmethod
    def forward(ctx, loss, rows, weight, bias, grads: Grads):
        ctx.grads = grads
        ctx.dtypes = tuple(None if t is None else t.dtype for t in (rows, weight, bias))
        return loss.detach().clone()

    @staticmethod
    def backward(ctx, grad_out):
        grads, ctx.grads = ctx.grads, None  # released: the (V, d) accumulator is the largest thing we hold
        if grads is None:
            raise RuntimeError("The fused loss head supports one backward per forward (no retain_graph).")
        out = []
        for g, dtype in zip((grads.rows, grads.weight, grads.bias), ctx.dtypes):
            out.append(None if g is None else g.mul_(grad_out).to(dtype))
        return None, *out, None


def chunks(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def chunk_grad(proj: Projection, h: torch.Tensor, loss_of_logits, want_grad: bool):
    """Loss of one chunk and its (n, V) gradient w.r.t. the linear output, by autograd on this chunk only."""
    lin = proj.linear(h)
    if not want_grad:
        return loss_of_logits(logit_transform(lin, proj.logit_scale, proj.softcap)).detach(), None
    lin.requires_grad_()
    with torch.enable_grad():
        loss = loss_of_logits(logit_transform(lin, proj.logit_scale, proj.softcap))
        (g,) = torch.autograd.grad(loss, lin, allow_unused=True) if loss.requires_grad else (None,)
    return loss.detach(), g


def as_pairs(z: torch.Tensor, tokens: torch.Tensor, ignore_index: int):
    """(n, V) rows -> (n, 2, V) logits and (n, 2) labels where row 0 scores label 1: each target becomes its own
    two-token sequence, so the logits-path loss sees exactly these rows. ``expand`` makes no copy."""
    labels = torch.full((z.shape[0], 2), ignore_index, dtype=torch.long, device=z.device)
    labels[:, 1] = tokens
    return z[:, None, :].expand(-1, 2, -1), labels


def weighted_objective(logp, h, kl, ce_w, ent_w, kl_w) -> torch.Tensor:
    """EKSFT's objective for given per-target coefficients (as in ``eksft_loss``); ``h``/``kl`` may be None."""
    loss = (ce_w * -logp).sum()
    if h is not None:
        loss = loss - (ent_w * h).sum() + (kl_w * kl).sum()
    return loss


def row_stats(logz, ref_logz, tokens):
    """log p(y), H(p) and KL(p || q) per row, by the logits path's own functions (H, KL None without reference)."""
    logp = logz.gather(-1, tokens[:, None]).squeeze(-1)
    if ref_logz is None:
        return logp, None, None
    return logp, entropy_from_logprobs(logz), kl_from_logprobs(logz, ref_logz)


# ------------------------------------------------------------------------------------------------------ the passes
def row_pass(fn, rows, tokens, proj, ref_rows, ref_proj, d, chunk_size, grads, ignore_index, options):
    """One pass for per-target losses: the logits-path ``fn`` on each chunk, normalised by the global ``d``."""
    total, parts = torch.zeros((), dtype=torch.float32, device=rows.device), []
    for sl in chunks(rows.shape[0], chunk_size):

        def chunk_loss(z, sl=sl):
            logits, labels = as_pairs(z, tokens[sl], ignore_index)
            ref = () if ref_rows is None else (as_pairs(ref_proj.logits(ref_rows[sl]), tokens[sl], ignore_index)[0],)
            r = fn(logits, labels, *ref, normalization="tokens", num_items_in_batch=d, ignore_index=ignore_index,
                   **options)  # fmt: skip
            parts.append((sl.stop - sl.start, r.metrics))
            return r.loss

        loss, g = chunk_grad(proj, rows[sl], chunk_loss, grads is not None)
        total += loss
        if g is not None:
            grads.add(sl, rows[sl], g, proj)
    n = rows.shape[0]
    sums = ("loss", "num_targets")  # chunk contributions add up; every other metric is a mean over targets
    metrics = {k: sum(c * m[k] if k not in sums else m[k] for c, m in parts) / (1 if k in sums else n)
               for k in parts[0][1]}  # fmt: skip
    return total, metrics


def stats_pass(rows, tokens, proj, ref_rows, ref_proj, chunk_size):
    """Pass 1, no gradient: fp32 (N,) log p(y), H and KL for every valid target."""
    n = rows.shape[0]
    logp, h, kl = (torch.empty(n, dtype=torch.float32, device=rows.device) for _ in range(3))
    for sl in chunks(n, chunk_size):
        logz, ref_logz = log_softmax32(proj.logits(rows[sl])), log_softmax32(ref_proj.logits(ref_rows[sl]))
        logp[sl], h[sl], kl[sl] = row_stats(logz, ref_logz, tokens[sl])
    if not bool(torch.isfinite(logp).all() & torch.isfinite(h).all() & torch.isfinite(kl).all()):
        raise ValueError("The fused head produced NaN or inf statistics: check `hidden`, `ref_hidden` and the lm_head "
                         "weights (overflow in fp16/bf16, a diverged run) before computing the loss.")  # fmt: skip
    return logp, h, kl


def weighted_grad_pass(rows, tokens, proj, ref_rows, ref_proj, ce_w, ent_w, kl_w, chunk_size, grads):
    """Pass 2: gradient of ``weighted_objective``. Targets without a regulariser need only the policy's logits."""
    reg = (ent_w != 0) | (kl_w != 0)
    for with_ref, idx_all in ((True, reg.nonzero().squeeze(1)), (False, (~reg & (ce_w != 0)).nonzero().squeeze(1))):
        for sl in chunks(idx_all.numel(), chunk_size):
            idx = idx_all[sl]

            def chunk_loss(z, idx=idx, with_ref=with_ref):
                ref_logz = log_softmax32(ref_proj.logits(ref_rows[idx])) if with_ref else None
                logp, h, kl = row_stats(log_softmax32(z), ref_logz, tokens[idx])
                return weighted_objective(logp, h, kl, ce_w[idx], ent_w[idx], kl_w[idx])

            h_rows = rows[idx]
            _, g = chunk_grad(proj, h_rows, chunk_loss, True)
            if g is not None:
                grads.add(idx, h_rows, g, proj)


def random_mask_plan(logp, h, kl, *, fraction=0.1, seed=0, lambda_entropy=0.05, lambda_kl=0.05, normalization,
                      num_items_in_batch):  # fmt: skip
    """Coefficients and metrics of ``random_mask_loss`` (ablations.py) for its seeded mask."""
    check_fraction("fraction", fraction)
    check_nonnegative(lambda_entropy=lambda_entropy, lambda_kl=lambda_kl)
    n = logp.numel()
    m = random_select(n, fraction, seed, logp.device)
    keep = ~m
    d_ce = denominator(int(keep.sum()), normalization, num_items_in_batch, n)
    d_reg = denominator(int(m.sum()), normalization, num_items_in_batch, n)
    weights = (keep.float() / d_ce, m.float() * (lambda_entropy / d_reg), m.float() * (lambda_kl / d_reg))
    metrics = {
        "ce": mean_or_zero(-logp[keep]), "entropy_term": mean_or_zero(h[m]), "kl_term": mean_or_zero(kl[m]),
        "masked_fraction": float(m.float().mean()), "entropy_masked_mean": mean_or_zero(h[m]),
        "entropy_unmasked_mean": mean_or_zero(h[keep]), "kl_masked_mean": mean_or_zero(kl[m]),
        "kl_unmasked_mean": mean_or_zero(kl[keep]), "entropy_mean": float(h.mean()), "kl_mean": float(kl.mean()),
        "num_targets": float(n),
    }  # fmt: skip
    return m, weights, metrics
