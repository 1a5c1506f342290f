"""The fused head's fast path (closed-form block gradients on reused buffers, ``fused_passes.FAST_PATH``) against
its plain twin (autograd through the logits-path functions on each block): block by block in float64 (the maths) and
through the projection (fp32, bf16; bias, logit_scale, soft-cap), the whole loss for eksft, sft, dft and eaft (fp32,
fp64, bf16, tied weights), and that the fast path never calls autograd. CPU, a few seconds.
"""

from __future__ import annotations

import pytest
import torch

import eksft.losses.fused_passes as fused_passes
import eksft.losses.targets
from eksft.losses.targets import LossResult

from .test_fused import assert_same, grads, make_head_batch, run_fused, run_logits

pytestmark = pytest.mark.usefixtures("one_thread")


HEADS = {
    "plain": dict(bias=False, logit_scale=None, softcap=None),
    "scale": dict(bias=False, logit_scale=0.6, softcap=None),
    "bias_softcap": dict(bias=True, logit_scale=None, softcap=4.0),
    "bias_scale_softcap": dict(bias=True, logit_scale=1.7, softcap=3.0),
}


def make_block(head, n=37, d=48, V=1031, seed=0, dtype=torch.float64):
    """Policy and reference projections and rows for one block, with per-row coefficients (some of them zero)."""
    g = torch.Generator().manual_seed(seed)

    def proj():
        w = torch.randn(V, d, generator=g, dtype=torch.float64) * (2.0 / d**0.5)
        b = 0.3 * torch.randn(V, generator=g, dtype=torch.float64) if head["bias"] else None
        return fused_passes.Projection(
            w.to(dtype), None if b is None else b.to(dtype), head["logit_scale"], head["softcap"]
        )

    p, q = proj(), proj()
    rows, ref_rows = (torch.randn(n, d, generator=g, dtype=torch.float64).to(dtype) for _ in range(2))
    tokens = torch.randint(0, V, (n,), generator=g)
    ce_w, ent_w, kl_w = (
        torch.rand(n, generator=g, dtype=torch.float64) * (torch.rand(n, generator=g) < 0.8) for _ in range(3)
    )
    return p, q, rows, ref_rows, tokens, ce_w, ent_w, kl_w


def autograd_block_grad(proj, rows, ref_proj, ref_rows, tokens, ce_w, ent_w, kl_w):
    """The plain twin's maths in the block's own dtype: autograd through logit_transform and the logits-path
    statistics, w.r.t. the linear output."""
    lin = torch.nn.functional.linear(rows, proj.weight, proj.bias).requires_grad_()
    logz = eksft.losses.targets.log_softmax32(fused_passes.logit_transform(lin, proj.logit_scale, proj.softcap))
    ref_logz = None
    if ref_rows is not None:
        ref_lin = torch.nn.functional.linear(ref_rows, ref_proj.weight, ref_proj.bias)
        ref_logz = eksft.losses.targets.log_softmax32(
            fused_passes.logit_transform(ref_lin, ref_proj.logit_scale, ref_proj.softcap)
        )
    logp, h, kl = fused_passes.row_stats(logz, ref_logz, tokens)
    (g,) = torch.autograd.grad(fused_passes.weighted_objective(logp, h, kl, ce_w, ent_w, kl_w), lin)
    return g


@pytest.mark.parametrize("with_ref", [True, False], ids=["regularised", "ce_only"])
@pytest.mark.parametrize("head", list(HEADS))
def test_closed_form_block_gradient_is_exact_in_float64(head, with_ref):
    """The maths: in float64 the closed-form block gradient equals autograd's to rounding (1e-10)."""
    p, q, rows, ref_rows, tokens, ce_w, ent_w, kl_w = make_block(HEADS[head], seed=len(head))
    if not with_ref:
        ent_w, kl_w = torch.zeros_like(ent_w), torch.zeros_like(kl_w)
    ws = fused_passes.Workspace(64, p.weight.shape[0], rows.device, dtype=torch.float64)  # views of larger blocks
    fast = fused_passes.weighted_chunk_grad(p, rows, q, ref_rows if with_ref else None, tokens, ce_w, ent_w, kl_w, ws)
    exact = autograd_block_grad(p, rows, q, ref_rows if with_ref else None, tokens, ce_w, ent_w, kl_w)
    assert fast.dtype == torch.float64 and fast.shape == exact.shape
    torch.testing.assert_close(fast, exact, rtol=1e-10, atol=1e-12)
    if p.softcap is None:  # w.r.t. the logits every row sums to zero (the soft-cap's chain factor varies over V)
        torch.testing.assert_close(fast.sum(-1), torch.zeros_like(fast[:, 0]), rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("head", list(HEADS))
def test_fast_block_gradient_matches_chunk_grad(head, dtype):
    """Through the projection (fp32 statistics, the weight's matmul): the fast block gradient against the plain
    twin's ``chunk_grad`` on the same block, regularised rows and cross-entropy-only rows."""
    p, q, rows, ref_rows, tokens, ce_w, ent_w, kl_w = make_block(HEADS[head], seed=3, dtype=dtype)
    ce_w, ent_w, kl_w = ce_w.float(), ent_w.float(), kl_w.float()
    ws = fused_passes.Workspace(40, p.weight.shape[0], rows.device)
    for ref in (ref_rows, None):

        def loss(z, ref=ref):
            ref_logz = None if ref is None else eksft.losses.targets.log_softmax32(q.logits(ref))
            logp, h, kl = fused_passes.row_stats(eksft.losses.targets.log_softmax32(z), ref_logz, tokens)
            return fused_passes.weighted_objective(logp, h, kl, ce_w, *((ent_w, kl_w) if ref is not None else (0, 0)))

        _, plain = fused_passes.chunk_grad(p, rows, loss, True)
        weights = (ce_w, ent_w, kl_w) if ref is not None else (ce_w, 0 * ent_w, 0 * kl_w)
        fast = fused_passes.weighted_chunk_grad(p, rows, q, ref, tokens, *weights, ws)
        torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-6 * float(plain.abs().max()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("head", ["plain", "bias_scale_softcap"])
@pytest.mark.parametrize("loss_type", ["eksft", "sft", "dft", "eaft"])
def test_fast_path_matches_plain_twin(loss_type, head, dtype, monkeypatch):
    """The whole loss: value, mask, metrics and gradients of the fast path against the plain twin (chunk size 13, so
    partial chunks and both pass-2 groups), and against the logits path where the dtype allows a tight tolerance."""
    b = make_head_batch(bias=head != "plain", seed=13, dtype=dtype)
    head_kwargs = None if head == "plain" else dict(logit_scale=1.7, final_logit_softcapping=3.0)
    results = {}
    for fast in (True, False):
        monkeypatch.setattr(fused_passes, "FAST_PATH", fast)
        r = run_fused(loss_type, b, head_kwargs, chunk_size=13)
        results[fast] = (r, grads(r, b))
    (r_fast, g_fast), (r_plain, g_plain) = results[True], results[False]
    torch.testing.assert_close(r_fast.loss.detach(), r_plain.loss.detach(), rtol=1e-6, atol=1e-6)
    assert (r_fast.mask is None and r_plain.mask is None) or torch.equal(r_fast.mask, r_plain.mask)
    assert r_fast.metrics == pytest.approx(r_plain.metrics, rel=1e-5, abs=1e-6)
    for a, c in zip(g_fast, g_plain):
        assert a.dtype == c.dtype == dtype
        if dtype == torch.bfloat16:  # both round the fp32 block gradient to bf16 for the matmul: about one ulp apart
            torch.testing.assert_close(a, c, rtol=1e-2, atol=4e-3 * float(c.abs().max()))
        else:
            torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-6 * float(c.abs().max()))
    if dtype != torch.bfloat16:  # bf16 against the logits path: the tolerance rule (test_error_against_float64_...)
        r_logits = run_logits(loss_type, b, head_kwargs)
        if dtype == torch.float64:  # the fused statistics and loss are fp32 whatever the input dtype
            r_logits = LossResult(r_logits.loss.float(), r_logits.metrics, r_logits.mask)
        monkeypatch.setattr(fused_passes, "FAST_PATH", True)
        assert_same(r_logits, run_fused(loss_type, b, head_kwargs, chunk_size=13), b)


@pytest.mark.parametrize("loss_type", ["eksft", "random_mask", "sft", "dft", "eaft"])
def test_fast_path_does_not_use_autograd(loss_type, monkeypatch):
    """The losses with a closed form never reach ``chunk_grad`` (autograd per block) on the fast path."""

    def refuse(*args, **kwargs):
        raise AssertionError("chunk_grad called on the fast path")

    monkeypatch.setattr(fused_passes, "chunk_grad", refuse)
    b = make_head_batch(seed=5)
    assert_same(run_logits(loss_type, b), run_fused(loss_type, b, chunk_size=16), b)
