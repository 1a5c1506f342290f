"""Parity of the fused loss head (``eksft.losses.fused``, issue 7) with the logits path it replaces.

Checks, on CPU only (no GPU needed; the module runs in well under a minute on 2 cores):

* value, mask, metrics and gradients w.r.t. ``hidden``, ``lm_head_weight`` and the bias equal those of the logits-path
  loss on ``head_logits(...)``, for EKSFT under many options (selection, scope, normalization, rho 0 / 0.2 / 1,
  bias, logit_scale, soft-capping, chunk sizes below and above N, packed ``position_ids``) and for every other loss
  the fused path serves, on odd shapes (B=3, T=37, d=48, V=1031) with random ignored positions;
* no valid target, tied embeddings, ``no_grad``, a scaled backward, and the argument errors;
* the tolerance rule: against a float64 computation, the fused path's error is no worse than the logits path's own
  error at the same dtype (fp32 and bf16 inputs) plus a small margin;
* no tensor as large as the full ``(N, V)`` logits is ever allocated (every op's output traced by a dispatch mode);
* every parity test runs on the fast path and on its plain twin (``fused_passes.FAST_PATH``); the fast path's own
  block-by-block checks are in test_fused_fast_path.py.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import eksft.losses.ablations
import eksft.losses.baselines
import eksft.losses.eaft
import eksft.losses.eksft
import eksft.losses.fused_passes as fused_passes
import eksft.losses.targets
from eksft.losses import LOSSES, SPECS, eksft_head_loss, fused_head_loss
from eksft.losses.fused import head_logits

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(params=["fast", "plain"])
def fused_path(request, monkeypatch):
    """Runs a test on the fast path (the default) and on its plain twin (``FAST_PATH = False``)."""
    monkeypatch.setattr(fused_passes, "FAST_PATH", request.param == "fast")
    return request.param


OPTIONS = {"sed_sft": {"tau": 0.2}}  # tau is required; 0.2 puts part of the random targets under it


def make_head_batch(B=3, T=37, d=48, V=1031, seed=0, bias=False, ignore_frac=0.3, dtype=torch.float32):
    """Policy and reference hidden states / heads with random ignored label positions (at least one valid target)."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B, T, d, generator=g)
    weight = torch.randn(V, d, generator=g) * (2.0 / d**0.5)
    batch = {
        "hidden": hidden.to(dtype).requires_grad_(),
        "weight": weight.to(dtype).requires_grad_(),
        "ref_hidden": (hidden + 0.5 * torch.randn(B, T, d, generator=g)).to(dtype),
        "ref_weight": (weight + 0.1 * torch.randn(V, d, generator=g)).to(dtype),
        "bias": (0.3 * torch.randn(V, generator=g)).to(dtype).requires_grad_() if bias else None,
        "ref_bias": (0.3 * torch.randn(V, generator=g)).to(dtype) if bias else None,
    }
    labels = torch.randint(0, V, (B, T), generator=g)
    labels[torch.rand(B, T, generator=g) < ignore_frac] = -100
    labels[0, 1] = 3
    batch["labels"] = labels
    return batch


def run_logits(loss_type, b, head=None, **options):
    head = head or {}
    logits = head_logits(b["hidden"], b["weight"], b["bias"], **head)
    ref = ()
    if SPECS[loss_type].needs_reference:
        ref = (head_logits(b["ref_hidden"], b["ref_weight"], b["ref_bias"], **head).detach(),)
    return LOSSES[loss_type](logits, b["labels"], *ref, **OPTIONS.get(loss_type, {}), **options)


def run_fused(loss_type, b, head=None, **options):
    head = head or {}
    ref = (b["ref_hidden"], b["ref_weight"]) if SPECS[loss_type].needs_reference else ()
    return fused_head_loss(
        loss_type,
        b["hidden"],
        b["weight"],
        b["labels"],
        *ref,
        lm_head_bias=b["bias"],
        ref_lm_head_bias=b["ref_bias"] if ref else None,
        **head,
        **OPTIONS.get(loss_type, {}),
        **options,
    )


def grads(result, b):
    params = [b["hidden"], b["weight"]] + ([b["bias"]] if b["bias"] is not None else [])
    return torch.autograd.grad(result.loss, params)


def assert_same(r_logits, r_fused, b, atol=2e-6, rtol=1e-4):
    torch.testing.assert_close(r_fused.loss.detach(), r_logits.loss.detach(), atol=atol, rtol=rtol)
    assert (r_fused.mask is None) == (r_logits.mask is None)
    if r_logits.mask is not None:
        assert r_fused.mask.shape == b["labels"].shape
        assert torch.equal(r_fused.mask, r_logits.mask)
    assert r_fused.metrics.keys() == r_logits.metrics.keys()
    for key, value in r_logits.metrics.items():
        assert r_fused.metrics[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
    for g_fused, g_logits in zip(grads(r_fused, b), grads(r_logits, b)):
        torch.testing.assert_close(g_fused, g_logits, atol=atol, rtol=rtol)


EKSFT_CASES = [
    dict(),
    dict(rho=0.0),
    dict(rho=1.0),
    dict(rho=0.3, selection="intersection", chunk_size=7),
    dict(selection="entropy", chunk_size=1000),
    dict(selection="kl", lambda_entropy=0.0),
    dict(scope="sequence", normalization="tokens", num_items_in_batch=150),
    dict(normalization="tokens", chunk_size=1),
    dict(rho=0.5, lambda_entropy=0.3, lambda_kl=0.7, head=dict(logit_scale=0.6)),
    dict(rho=0.3, lambda_entropy=0.3, entropy_unit="nats", chunk_size=5),
    dict(bias=True, head=dict(final_logit_softcapping=4.0), chunk_size=16),
    dict(bias=True, head=dict(logit_scale=1.7, final_logit_softcapping=3.0), scope="sequence"),
]


@pytest.mark.parametrize("case", EKSFT_CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "defaults")
def test_eksft_matches_logits_path(case, fused_path):
    case = dict(case)
    b = make_head_batch(bias=case.pop("bias", False), seed=len(str(case)))
    head, chunk = case.pop("head", None), case.pop("chunk_size", 32)
    r_logits = run_logits("eksft", b, head, **case)
    r_fused = eksft_head_loss(
        b["hidden"],
        b["weight"],
        b["labels"],
        b["ref_hidden"],
        b["ref_weight"],
        lm_head_bias=b["bias"],
        ref_lm_head_bias=b["ref_bias"],
        chunk_size=chunk,
        **(head or {}),
        **case,
    )
    assert_same(r_logits, r_fused, b)


def test_eksft_packed_sequences_use_position_ids(fused_path):
    b = make_head_batch(B=1, T=60, seed=3)
    position_ids = torch.cat([torch.arange(25), torch.arange(35)])[None]
    options = dict(scope="sequence", position_ids=position_ids)
    assert_same(run_logits("eksft", b, **options), run_fused("eksft", b, chunk_size=9, **options), b)


@pytest.mark.parametrize("loss_type", ["sft", "dft", "gem", "sed_sft", "asft", "global_reg", "random_mask", "eaft"])
@pytest.mark.parametrize("variant", ["plain", "bias_softcap_tokens"])
def test_other_losses_match_logits_path(loss_type, variant, fused_path):
    b = make_head_batch(bias=variant != "plain", seed=11)
    head, options = None, {}
    if variant != "plain":
        head = dict(logit_scale=0.8, final_logit_softcapping=5.0)
        options = dict(normalization="tokens", num_items_in_batch=97)
    assert_same(run_logits(loss_type, b, head, **options), run_fused(loss_type, b, head, chunk_size=13, **options), b)


@pytest.mark.parametrize(
    "options",
    [
        dict(entropy="full"),
        dict(alpha=0.5, topk=7),
        dict(topk=7, normalizer="ln_k"),
        dict(alpha=2, entropy="full", topk=3),
    ],
    ids=str,
)
def test_eaft_options_match_logits_path(options, fused_path):
    """EAFT's weight from the top-k or the full entropy of each chunk's rows equals the logits path's (V = 1031, so
    k < V)."""
    b = make_head_batch(seed=14, bias=True)
    head = dict(final_logit_softcapping=6.0)
    assert_same(run_logits("eaft", b, head, **options), run_fused("eaft", b, head, chunk_size=11, **options), b)


@pytest.mark.parametrize("loss_type", ["global_reg", "random_mask"])
def test_ablations_in_nats_match_logits_path(loss_type, fused_path):
    b = make_head_batch(seed=12)
    options = dict(lambda_entropy=0.4, entropy_unit="nats")
    assert_same(run_logits(loss_type, b, **options), run_fused(loss_type, b, chunk_size=13, **options), b)


@pytest.mark.parametrize("loss_type", ["eksft", "sft", "global_reg", "sed_sft"])
def test_no_valid_target(loss_type):
    b = make_head_batch(B=2, T=5)
    b["labels"][:, 1:] = -100  # position 0 is never a target: nothing is scored
    r_logits, r_fused = run_logits(loss_type, b), run_fused(loss_type, b)
    assert float(r_fused.loss.detach()) == 0.0
    assert_same(r_logits, r_fused, b)
    for g in grads(run_fused(loss_type, b), b):
        assert torch.count_nonzero(g) == 0


def test_tied_embeddings(fused_path):
    """The policy head is the embedding matrix: its gradient from the head and from the input lookup must add up."""
    B, T, d, V = 2, 19, 24, 301
    g = torch.Generator().manual_seed(5)
    emb0 = torch.randn(V, d, generator=g) * 0.5
    mix = torch.randn(d, d, generator=g) / d**0.5
    ids = torch.randint(0, V, (B, T), generator=g)
    labels = ids.clone()
    labels[:, :4] = -100
    ref_hidden = torch.tanh(emb0[ids] @ mix) + 0.1 * torch.randn(B, T, d, generator=g)
    results = []
    for fused in (False, True):
        emb = torch.nn.Embedding.from_pretrained(emb0.clone(), freeze=False)
        hidden = torch.tanh(emb(ids) @ mix)  # a stand-in backbone that reads the same matrix
        if fused:
            r = eksft_head_loss(hidden, emb.weight, labels, ref_hidden, emb0, chunk_size=8)
        else:
            r = LOSSES["eksft"](head_logits(hidden, emb.weight), labels, head_logits(ref_hidden, emb0))
        r.loss.backward()
        results.append((r.loss.detach(), emb.weight.grad))
    torch.testing.assert_close(results[1][0], results[0][0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(results[1][1], results[0][1], atol=1e-6, rtol=1e-5)


def test_no_grad_and_scaled_backward():
    b = make_head_batch(seed=2)
    with torch.no_grad():
        r = run_fused("eksft", b)
    assert r.loss.grad_fn is None
    torch.testing.assert_close(r.loss, run_logits("eksft", b).loss.detach())
    g1 = grads(run_fused("eksft", b), b)
    r2 = run_fused("eksft", b)
    g2 = torch.autograd.grad(2.5 * r2.loss, [b["hidden"], b["weight"]])
    for a, c in zip(g1, g2):
        torch.testing.assert_close(2.5 * a, c)


def test_frozen_head_gets_no_gradient():
    """LoRA-style training: a frozen lm_head weight gets no gradient and is not accumulated (hidden still is)."""
    b = make_head_batch(seed=4)
    b["weight"].requires_grad_(False)
    r = run_fused("eksft", b)
    (g_h,) = torch.autograd.grad(r.loss, [b["hidden"]])
    (g_ref,) = torch.autograd.grad(run_logits("eksft", b).loss, [b["hidden"]])
    torch.testing.assert_close(g_h, g_ref, atol=2e-6, rtol=1e-4)


# --------------------------------------------------------------------------------------------------- tolerance rule
@contextlib.contextmanager
def float64_statistics():
    """Run the logits-path losses with float64 log-softmax: the 'exact' computation for the tolerance rule."""
    modules = (eksft.losses.targets, eksft.losses.eksft, eksft.losses.baselines, eksft.losses.eaft)  # every caller
    saved = [m.log_softmax32 for m in modules]
    for m in modules:
        m.log_softmax32 = lambda rows: torch.log_softmax(rows.double(), dim=-1)
    try:
        yield
    finally:
        for m, f in zip(modules, saved):
            m.log_softmax32 = f


def cast(b, dtype):
    out = {k: v for k, v in b.items()}
    for k in ("hidden", "weight", "ref_hidden", "ref_weight"):
        out[k] = b[k].detach().to(dtype).requires_grad_(k in ("hidden", "weight"))
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("loss_type", ["eksft", "sft", "dft", "asft", "eaft"])
def test_error_against_float64_no_worse_than_logits_path(loss_type, dtype, fused_path):
    b = make_head_batch(seed=7, T=29)
    b64 = cast(b, torch.float64)
    with float64_statistics():
        exact = run_logits(loss_type, b64)
        exact_grads = grads(exact, b64)
    low = cast(b, dtype)
    r_logits, r_fused = run_logits(loss_type, low), run_fused(loss_type, low, chunk_size=16)
    if exact.mask is not None:  # precondition: the rounding did not move a target across the top-k boundary
        assert torch.equal(r_logits.mask, exact.mask) and torch.equal(r_fused.mask, exact.mask)
    eps = torch.finfo(dtype).eps
    pairs = [(r_logits.loss, r_fused.loss, exact.loss)]
    pairs += list(zip(grads(r_logits, low), grads(r_fused, low), exact_grads))
    for logits_value, fused_value, exact_value in ((a.detach(), c.detach(), e.detach()) for a, c, e in pairs):
        scale = float(exact_value.abs().max())
        err_logits = float((logits_value.double() - exact_value).abs().max())
        err_fused = float((fused_value.double() - exact_value).abs().max())
        assert err_fused <= 1.1 * err_logits + 4 * eps * scale, (err_fused, err_logits, scale)


# ------------------------------------------------------------------------------------------- no (N, V) allocation
class LargestAllocation(TorchDispatchMode):
    """Records the largest storage (bytes) of any tensor an aten op returns, forward and backward."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.untyped_storage().nbytes())
        return out


@pytest.mark.parametrize("loss_type", ["eksft", "sft", "asft", "random_mask"])
def test_no_full_vocabulary_tensor(loss_type, fused_path):
    b = make_head_batch(B=4, T=100, d=16, V=1031, ignore_frac=0.1, seed=9)
    n_valid = int((b["labels"][:, 1:] != -100).sum())
    chunk, V = 32, 1031
    full_logits_bytes = 4 * n_valid * V
    with LargestAllocation() as fused_mode:
        r = run_fused(loss_type, b, chunk_size=chunk)
        r.loss.backward()
    with LargestAllocation() as logits_mode:  # the tracer does see the logits path's (N, V) tensors
        run_logits(loss_type, b).loss.backward()
    assert n_valid > 8 * chunk
    assert logits_mode.largest >= full_logits_bytes
    # At most two fp32 (chunk, V) blocks: autograd's slice backward fills a (chunk, 2, V) gradient for the per-target
    # losses, which see each target as a two-token sequence. The (V, d) weight gradient is smaller here.
    assert fused_mode.largest <= 2 * 4 * chunk * V
    assert fused_mode.largest < full_logits_bytes / 4


# ------------------------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda b: eksft_head_loss(
                b["hidden"], b["weight"], b["labels"], b["ref_hidden"], b["ref_weight"], variant="official"
            ),
            "variant",
        ),
        (lambda b: fused_head_loss("eksft", b["hidden"], b["weight"], b["labels"]), "ref_hidden"),
        (lambda b: fused_head_loss("sft", b["hidden"], b["weight"], b["labels"], chunk_size=0), "chunk_size"),
        (lambda b: fused_head_loss("sft", b["hidden"], b["weight"], b["labels"], rho=0.2), "rho"),
        (lambda b: fused_head_loss("sed_sft", b["hidden"], b["weight"], b["labels"]), "tau"),
        (lambda b: fused_head_loss("iw_sft", b["hidden"], b["weight"], b["labels"]), "loss_type"),
        (lambda b: fused_head_loss("sft", b["hidden"], b["weight"][:, :5], b["labels"]), "lm_head_weight"),
        (lambda b: fused_head_loss("sft", b["hidden"][:, :-1], b["weight"], b["labels"]), "hidden"),
        (lambda b: fused_head_loss("sft", b["hidden"], b["weight"][:100], b["labels"]), "labels"),
        (lambda b: fused_head_loss("sft", b["hidden"], b["weight"], b["labels"], normalization="sum"), "normalization"),
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call(make_head_batch(B=2, T=6))
