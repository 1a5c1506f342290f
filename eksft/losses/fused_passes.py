"""The chunked passes behind :mod:`eksft.losses.fused` (design in docs/fused_head.md).

Every block here is ``(chunk, V)`` at most: rows are projected ``chunk_size`` at a time, statistics are fp32, and
gradients w.r.t. the hidden rows, the weight and the bias are accumulated in fp32 as each block is done.

Two implementations of the same passes (docs/fused_head.md, "Fast path and plain twin"):

* the fast path (``FAST_PATH = True``, the default): the block gradients of EKSFT's weighted objective and of the
  cross-entropy-type losses (sft, dft, eaft) in closed form, a few in-place ops on reused ``(chunk, V)`` buffers
  (:class:`Workspace`); statistics by the same fused ops into those buffers;
* the plain twin (``FAST_PATH = False``): each block through the logits-path functions (``log_softmax32``,
  ``entropy_from_logprobs``, ``kl_from_logprobs``, ``sft_loss``, ...) and autograd on that block (:func:`chunk_grad`).
  Every other loss (gem, sed_sft, asft, global_reg) always takes this path. Tests compare the two.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .baselines import dft_loss, sft_loss
from .checks import NonFiniteError
from .eaft import eaft_loss, normalized_entropy
from .targets import entropy_from_logprobs, kl_from_logprobs, log_softmax32, pick

#: True: closed-form block gradients on reused buffers. False: the plain twin (autograd on the logits-path functions).
#: A module switch, not a parameter, on purpose: the plain twin exists to be compared with (the tests flip it, and so
#: can someone chasing a suspected fast-path bug); no training run should choose it, so no config field offers it.
FAST_PATH = True


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

    def logits_into(self, h: torch.Tensor, ws: Workspace, name: str, chain: str | None = None):
        """:meth:`logits` written into the workspace block ``name`` (same ops, same rounding). With ``chain`` and a
        soft-cap, also the block ``chain`` = ``1 - tanh^2``, the soft-cap's derivative up to ``logit_scale``.
        Returns ``(z, chain block or None)``."""
        n, w = h.shape[0], self.weight
        out = ws.get(name, n)
        lin = out if w.dtype == out.dtype else ws.get(f"linear_{w.dtype}", n, w.dtype)
        h = h.to(w.dtype)
        if self.bias is None:  # F.linear's own kernels: mm, or addmm with the bias
            torch.mm(h, w.t(), out=lin)
        else:
            torch.addmm(self.bias, h, w.t(), out=lin)
        if lin is not out:
            out.copy_(lin)
        if self.logit_scale is not None:
            out.mul_(self.logit_scale)
        d = None
        if self.softcap is not None:
            out.div_(self.softcap).tanh_()
            if chain is not None:
                d = torch.mul(out, out, out=ws.get(chain, n)).neg_().add_(1.0)
            out.mul_(self.softcap)
        return out, d


class Workspace:
    """Named ``(rows, V)`` blocks, allocated once per call and reused by every chunk (views of the first ``n`` rows).

    On CPU a fresh block of that size costs more to fault in than most ops on it (a 128 x 151,936 fp32 block, on the
    2-core test machine: about 40 ms to allocate and touch, 4-8 ms for an in-place op on it), and the plain twin
    allocates about ten per chunk.
    """

    def __init__(self, rows: int, vocab: int, device, dtype: torch.dtype = torch.float32):
        self.rows, self.vocab, self.device, self.dtype = rows, vocab, device, dtype  # dtype: of the statistics
        self.blocks: dict = {}

    @classmethod
    def ensure(cls, ws: Workspace | None, rows: torch.Tensor, proj: Projection, chunk_size: int) -> Workspace:
        """``ws``, or a new workspace for ``chunk_size`` blocks of ``rows`` under ``proj`` (passes called directly)."""
        return ws or cls(min(chunk_size, rows.shape[0]), proj.weight.shape[0], rows.device)

    def get(self, name: str, n: int, dtype: torch.dtype | None = None) -> torch.Tensor:
        dtype = dtype or self.dtype
        block = self.blocks.get((name, dtype))
        if block is None:
            block = self.blocks[(name, dtype)] = torch.empty(self.rows, self.vocab, dtype=dtype, device=self.device)
        return block[:n]


class Grads:
    """fp32 gradient accumulators for the hidden rows, weight and bias (only those that need a gradient)."""

    def __init__(self, rows, weight, bias):
        def zeros(t):
            return (
                torch.zeros(t.shape, dtype=torch.float32, device=t.device)
                if t is not None and t.requires_grad
                else None
            )

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
    logp = pick(logz, tokens)
    if ref_logz is None:
        return logp, None, None
    return logp, entropy_from_logprobs(logz), kl_from_logprobs(logz, ref_logz)


# --------------------------------------------------------------------------------------- closed-form block gradients
# Each takes (n, V) blocks and overwrites them; the returned block is the gradient w.r.t. the *linear* output
# ``h @ W.T + b``. Row weights come in already multiplied by ``logit_scale``, and ``chain`` is the soft-cap's
# ``1 - tanh^2`` block (or None): together the chain rule through :func:`logit_transform`.
def finish_grad_(g, tokens, w, chain):
    """``g - w e_y`` (``w`` (n, 1)), then times ``chain``."""
    g.scatter_add_(1, tokens[:, None], -w)
    return g if chain is None else g.mul_(chain)


def weighted_block_grad_(z, logq, tokens, ce_w, ent_w, kl_w, chain, logp, scratch):
    """Gradient of :func:`weighted_objective` on one block, in closed form.

    z: transformed policy logits (ends as p); logq: reference log-probs (ends as logp - logq); logp, scratch: blocks
    (logp ends as the gradient, which is returned); ce_w, ent_w, kl_w: (n,). With p = softmax(z), H = -sum p logp,
    KL = sum p (logp - logq), per row:

        d(-logp_y)/dz = p - e_y,   dH/dz = -p (logp + H),   dKL/dz = p (logp - logq - KL),
        g = ce_w (p - e_y) - ent_w dH/dz + kl_w dKL/dz
          = p * (ent_w logp + kl_w (logp - logq) + ce_w + ent_w H - kl_w KL) - ce_w e_y.

    H and KL are recomputed from this block (as the plain twin does), so each row's g sums to 0 over V.
    """
    torch.log_softmax(z, -1, out=logp)
    p = torch.exp(logp, out=z)
    h = -torch.mul(p, logp, out=scratch).sum(-1, keepdim=True)
    diff = torch.sub(logp, logq, out=logq)
    kl = torch.mul(p, diff, out=scratch).sum(-1, keepdim=True)
    ce_w, ent_w, kl_w = ce_w[:, None], ent_w[:, None], kl_w[:, None]
    g = torch.addcmul(ce_w + ent_w * h - kl_w * kl, logp, ent_w, out=logp)
    g.addcmul_(diff, kl_w).mul_(p)
    return finish_grad_(g, tokens, ce_w, chain)


def ce_block_grad_(z, tokens, ce_w, chain, out):
    """Gradient of ``sum ce_w (-logp_y)`` on one block: ``ce_w (p - e_y)``, into ``out``. ce_w: (n,)."""
    g = torch.softmax(z, -1, out=out).mul_(ce_w[:, None])
    return finish_grad_(g, tokens, ce_w[:, None], chain)


def _scaled(w: torch.Tensor, proj: Projection) -> torch.Tensor:
    return w if proj.logit_scale is None else w * proj.logit_scale


# ------------------------------------------------------------------------------------------------------ the passes
@dataclass(frozen=True)
class CeRows:
    """A cross-entropy-type per-target loss, ``-c * logp_y`` with c detached, which has a closed-form fast path.

    ``coefficient(logp_y, H, top)`` gives c and the loss's extra per-target metrics (averaged over targets) from the
    block's (detached) ``(n,)`` target log-probabilities and full entropies and, when ``topk`` > 0, the ``(n, topk)``
    largest logits of each row.
    """

    coefficient: Callable
    topk: int = 0


def ce_rows(fn, options: dict, vocab: int) -> CeRows | None:
    """The closed form of per-target loss ``fn`` with ``options`` (None: it has none; autograd on each block)."""
    if fn is sft_loss and not options:
        return CeRows(lambda lp, h, top: (torch.ones_like(lp), {}))
    if fn is dft_loss and not options:
        return CeRows(lambda lp, h, top: (torch.exp(lp), {}))
    if fn is eaft_loss:  # c = sg(h)^alpha, as eaft_loss computes it

        def eaft(lp, h, top, alpha=options["alpha"], normalizer=options["normalizer"]):
            hn = normalized_entropy(h, top, vocab, normalizer)
            w = hn.pow(alpha)
            return w, {"weight_mean": w, "eaft_entropy_mean": hn}

        return CeRows(eaft, min(options["topk"], vocab) if options["entropy"] == "topk" else 0)
    return None


def row_pass(fn, rows, tokens, proj, ref_rows, ref_proj, d, chunk_size, grads, ignore_index, options, ws=None):
    """One pass for per-target losses: the logits-path ``fn`` on each chunk, normalised by the global ``d``
    (sft, dft and eaft: their closed form on the fast path, :func:`ce_rows`)."""
    rule = ce_rows(fn, options, proj.weight.shape[0]) if FAST_PATH else None
    if rule is not None:
        ws = Workspace.ensure(ws, rows, proj, chunk_size)
        return ce_row_pass(rule, rows, tokens, proj, d, chunk_size, grads, ws)
    total, parts = torch.zeros((), dtype=torch.float32, device=rows.device), []
    for sl in chunks(rows.shape[0], chunk_size):

        def chunk_loss(z, sl=sl):
            logits, labels = as_pairs(z, tokens[sl], ignore_index)
            ref = () if ref_rows is None else (as_pairs(ref_proj.logits(ref_rows[sl]), tokens[sl], ignore_index)[0],)
            r = fn(
                logits, labels, *ref, normalization="tokens", num_items_in_batch=d, ignore_index=ignore_index, **options
            )
            parts.append((sl.stop - sl.start, r.metrics))
            return r.loss

        loss, g = chunk_grad(proj, rows[sl], chunk_loss, grads is not None)
        total += loss
        if g is not None:
            grads.add(sl, rows[sl], g, proj)
    n = rows.shape[0]
    sums = ("loss", "num_targets")  # chunk contributions add up; every other metric is a mean over targets
    metrics = {
        k: sum(c * m[k] if k not in sums else m[k] for c, m in parts) / (1 if k in sums else n) for k in parts[0][1]
    }
    return total, metrics


def ce_row_pass(rule: CeRows, rows, tokens, proj, d, chunk_size, grads, ws):
    """Fast path of :func:`row_pass` for ``-c * logp_y / d`` (:class:`CeRows`: sft c = 1, dft c = p_y, eaft
    c = sg(h)^alpha), with ``baselines.finish``'s metrics and the loss's own. Gradient per block: ``c / d * (p - e_y)``,
    chained through the logit transform."""
    n = rows.shape[0]
    logp, h, c = (torch.empty(n, dtype=torch.float32, device=rows.device) for _ in range(3))
    extra = {}
    for sl in chunks(n, chunk_size):
        z, chain = proj.logits_into(rows[sl], ws, "z", "chain" if grads is not None else None)
        top = torch.topk(z, rule.topk, dim=-1).values if rule.topk else None  # (n, k), before z becomes p
        logz = torch.log_softmax(z, -1, out=ws.get("logp", z.shape[0]))
        logp[sl] = lp = pick(logz, tokens[sl])
        p = torch.exp(logz, out=z)
        h[sl] = -logz.mul_(p).sum(-1)
        c[sl], stats = rule.coefficient(lp, h[sl], top)
        for name, value in stats.items():
            extra.setdefault(name, torch.empty(n, dtype=torch.float32, device=rows.device))[sl] = value
        if grads is not None:
            w = _scaled(c[sl] / d, proj)[:, None]
            grads.add(sl, rows[sl], finish_grad_(p.mul_(w), tokens[sl], w, chain), proj)
    loss = (c * -logp).sum() / d
    metrics = {"loss": float(loss), "ce": float(-logp.mean()), "entropy_mean": float(h.mean()), "num_targets": float(n)}
    metrics.update({name: float(value.mean()) for name, value in extra.items()})
    return loss, metrics


def stats_pass(rows, tokens, proj, ref_rows, ref_proj, chunk_size, ws=None):
    """Pass 1, no gradient: fp32 (N,) log p(y), H and KL for every valid target."""
    n = rows.shape[0]
    logp, h, kl = (torch.empty(n, dtype=torch.float32, device=rows.device) for _ in range(3))
    ws = Workspace.ensure(ws, rows, proj, chunk_size)
    for sl in chunks(n, chunk_size):
        if FAST_PATH:  # the same ops as row_stats (bitwise), into reused blocks
            m = sl.stop - sl.start
            logz = torch.log_softmax(proj.logits_into(rows[sl], ws, "z")[0], -1, out=ws.get("logp", m))
            ref_logz = torch.log_softmax(ref_proj.logits_into(ref_rows[sl], ws, "z")[0], -1, out=ws.get("logq", m))
            logp[sl] = pick(logz, tokens[sl])
            p = torch.exp(logz, out=ws.get("z", m))
            kl[sl] = torch.sub(logz, ref_logz, out=ref_logz).mul_(p).sum(-1)
            h[sl] = -logz.mul_(p).sum(-1)
        else:
            logz, ref_logz = log_softmax32(proj.logits(rows[sl])), log_softmax32(ref_proj.logits(ref_rows[sl]))
            logp[sl], h[sl], kl[sl] = row_stats(logz, ref_logz, tokens[sl])
    if not bool(torch.isfinite(logp).all() & torch.isfinite(h).all() & torch.isfinite(kl).all()):
        raise NonFiniteError(
            "The fused head produced NaN or inf statistics: check `hidden`, `ref_hidden` and the "
            "lm_head weights (overflow in fp16/bf16, a diverged run) before computing the loss.",
            "fused-head statistics",
        )
    return logp, h, kl


def weighted_grad_pass(rows, tokens, proj, ref_rows, ref_proj, ce_w, ent_w, kl_w, chunk_size, grads, ws=None):
    """Pass 2: gradient of ``weighted_objective``. Targets without a regulariser need only the policy's logits and
    the cross-entropy part of the gradient."""
    reg = (ent_w != 0) | (kl_w != 0)
    ws = Workspace.ensure(ws, rows, proj, chunk_size)
    for with_ref, idx_all in ((True, reg.nonzero().squeeze(1)), (False, (~reg & (ce_w != 0)).nonzero().squeeze(1))):
        for sl in chunks(idx_all.numel(), chunk_size):
            idx = idx_all[sl]
            h_rows = rows[idx]
            if FAST_PATH:
                ref = ref_rows[idx] if with_ref else None
                g = weighted_chunk_grad(proj, h_rows, ref_proj, ref, tokens[idx], ce_w[idx], ent_w[idx], kl_w[idx], ws)
            else:

                def chunk_loss(z, idx=idx, with_ref=with_ref):
                    ref_logz = log_softmax32(ref_proj.logits(ref_rows[idx])) if with_ref else None
                    logp, h, kl = row_stats(log_softmax32(z), ref_logz, tokens[idx])
                    return weighted_objective(logp, h, kl, ce_w[idx], ent_w[idx], kl_w[idx])

                _, g = chunk_grad(proj, h_rows, chunk_loss, True)
            if g is not None:
                grads.add(idx, h_rows, g, proj)


def weighted_chunk_grad(proj, h_rows, ref_proj, ref_rows, tokens, ce_w, ent_w, kl_w, ws):
    """Fast path of one pass-2 chunk: the (n, V) gradient of ``weighted_objective`` w.r.t. the policy's linear output
    (a workspace block). ``ref_rows`` None: the rows carry no regulariser, only the cross-entropy part is formed."""
    n = h_rows.shape[0]
    if ref_rows is not None:
        logq = torch.log_softmax(ref_proj.logits_into(ref_rows, ws, "z")[0], -1, out=ws.get("logq", n))
    z, chain = proj.logits_into(h_rows, ws, "z", "chain")
    if ref_rows is None:
        return ce_block_grad_(z, tokens, _scaled(ce_w, proj), chain, ws.get("logp", n))
    ce_w, ent_w, kl_w = (_scaled(w, proj) for w in (ce_w, ent_w, kl_w))
    return weighted_block_grad_(z, logq, tokens, ce_w, ent_w, kl_w, chain, ws.get("logp", n), ws.get("scratch", n))
