"""Each loss against an independent per-token loop (tests/losses/brute_force.py): loss and gradient w.r.t. logits,
random inputs with random ignored positions. CPU, fp64, a few seconds."""

import pytest
import torch

from eksft.losses import (
    asft_loss,
    dft_loss,
    eaft_loss,
    eksft_loss,
    gem_loss,
    global_reg_loss,
    iw_sft_loss,
    psft_loss,
    random_mask_loss,
    sed_sft_loss,
    sft_loss,
    target_logprobs,
)

from . import brute_force as R
from .conftest import make_batch


def compare(lib_fn, ref_fn, seed, **batch_kw):
    logits, labels, ref = make_batch(seed=seed, dtype=torch.float64, **batch_kw)
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    out = lib_fn(a, labels, ref)
    expected = ref_fn(b, labels, ref)
    expected_loss = expected[0] if isinstance(expected, tuple) else expected
    torch.testing.assert_close(out.loss, expected_loss, rtol=1e-9, atol=1e-10)
    out.loss.backward()
    expected_loss.backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-8, atol=1e-10)
    assert a.grad.abs().sum() > 0
    return out, expected


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("selection", ["union", "intersection", "entropy", "kl"])
@pytest.mark.parametrize("scope", ["micro_batch", "sequence"])
@pytest.mark.parametrize("rho", [0.1, 0.2, 0.45])
def test_eksft_paper(seed, selection, scope, rho):
    out, (_, mask) = compare(
        lambda x, y, r: eksft_loss(
            x, y, r, rho=rho, selection=selection, scope=scope, lambda_entropy=0.3, lambda_kl=0.2
        ),
        lambda x, y, r: R.eksft_paper(x, y, r, rho=rho, lam_h=0.3, lam_kl=0.2, selection=selection, scope=scope),
        seed,
    )
    assert torch.equal(out.mask, mask)


@pytest.mark.parametrize("seed", range(3))
def test_eksft_paper_nats_and_ablations_in_both_units(seed):
    """entropy_unit='nats' (the equations read literally) and the normalised default, for every loss that reuses
    lambda_H, against the references (which divide by ln V themselves)."""
    compare(
        lambda x, y, r: eksft_loss(x, y, r, lambda_entropy=0.3, entropy_unit="nats"),
        lambda x, y, r: R.eksft_paper(x, y, r, lam_h=0.3, entropy_unit="nats"),
        seed,
    )
    for unit in ("nats", "normalized"):
        compare(
            lambda x, y, r: global_reg_loss(x, y, r, lambda_entropy=0.3, entropy_unit=unit),
            lambda x, y, r: R.global_reg(x, y, r, lam_h=0.3, entropy_unit=unit),
            seed,
        )
        out, (_, mask) = compare(
            lambda x, y, r: random_mask_loss(x, y, r, fraction=0.3, seed=seed, lambda_entropy=0.3, entropy_unit=unit),
            lambda x, y, r: R.random_mask(x, y, r, fraction=0.3, seed=seed, lam_h=0.3, entropy_unit=unit),
            seed,
        )
        assert torch.equal(out.mask, mask)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("selection", ["union", "intersection"])
@pytest.mark.parametrize("rho", [0.2, 0.5])
def test_eksft_official(seed, selection, rho):
    compare(
        lambda x, y, r: eksft_loss(x, y, r, rho=rho, selection=selection, variant="official"),
        lambda x, y, r: R.eksft_official(x, y, r, rho=rho, selection=selection),
        seed,
    )


@pytest.mark.parametrize("seed", range(3))
def test_comparison_losses(seed):
    compare(lambda x, y, r: sft_loss(x, y), lambda x, y, r: R.sft(x, y), seed)
    compare(lambda x, y, r: dft_loss(x, y), lambda x, y, r: R.dft(x, y), seed)
    compare(lambda x, y, r: iw_sft_loss(x, y, r), lambda x, y, r: R.iw_sft(x, y, r), seed)
    compare(lambda x, y, r: iw_sft_loss(x, y, r, clip=1.01), lambda x, y, r: R.iw_sft(x, y, r, clip=1.01), seed)
    compare(lambda x, y, r: asft_loss(x, y, r, lambda_kl=0.3), lambda x, y, r: R.asft(x, y, r, lam=0.3), seed)
    compare(lambda x, y, r: gem_loss(x, y, beta=0.5), lambda x, y, r: R.gem(x, y, beta=0.5), seed)
    compare(lambda x, y, r: global_reg_loss(x, y, r), lambda x, y, r: R.global_reg(x, y, r), seed)
    compare(lambda x, y, r: sed_sft_loss(x, y, tau=0.6, k=2), lambda x, y, r: R.sed_sft(x, y, 0.6, k=2), seed)
    compare(
        lambda x, y, r: sed_sft_loss(x, y, tau=0.8, k=3, lambda_sed=2.0),
        lambda x, y, r: R.sed_sft(x, y, 0.8, lam=2.0, k=3),
        seed,
    )


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"alpha": 0.5, "topk": 5},
        {"alpha": 0.5, "topk": 5, "normalizer": "ln_k"},
        {"alpha": 2.0, "topk": 2},
        {"alpha": 0.0, "topk": 7},
        {"entropy": "full"},
        {"entropy": "full", "alpha": 1.7},
        {"normalization": "tokens", "num_items_in_batch": 40, "topk": 4},
    ],
    ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "defaults",
)
def test_eaft(seed, kw):
    """EAFT against the per-token loop, V = 31 (so the default k = 20 is a real top-k) and V = 13 (k = min(20, V))."""
    kw = dict(kw)
    tokens = kw.pop("num_items_in_batch", None)
    ref_kw = {
        "alpha": kw.get("alpha", 1.0),
        "entropy_kind": kw.get("entropy", "topk"),
        "k": kw.get("topk", 20),
        "normalizer": kw.get("normalizer", "authors"),
    }
    for V in (31, 13):
        logits, labels, _ = make_batch(seed=seed, V=V, dtype=torch.float64)
        n = len(R.targets(labels))
        factor = 1.0 if tokens is None else n / tokens  # the reference is a mean over the n targets
        a, b = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
        out = eaft_loss(a, labels, num_items_in_batch=tokens, **kw)
        expected = R.eaft(b, labels, **ref_kw) * factor
        torch.testing.assert_close(out.loss, expected, rtol=1e-9, atol=1e-10)
        out.loss.backward()
        expected.backward()
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-8, atol=1e-10)
        assert a.grad.abs().sum() > 0 and 0 < out.metrics["weight_mean"] <= 1


@pytest.mark.parametrize("seed", range(3))
def test_psft_with_moved_policy(seed):
    """Old policy = the reference logits, so the ratio is far from 1 and some tokens are clipped."""
    logits, labels, ref = make_batch(seed=seed, dtype=torch.float64)
    old = target_logprobs(ref, labels)
    out, _ = compare(lambda x, y, r: psft_loss(x, y, old), lambda x, y, r: R.psft(x, y, old), seed)
    assert 0 < out.metrics["clip_fraction"] < 1


@pytest.mark.parametrize("seed", range(3))
def test_random_mask(seed):
    """The library's mask is the reference's own draw from the seed (exactly ceil(0.3 n) targets), and the loss and
    gradient are the EKSFT objective on that mask."""
    logits, labels, ref = make_batch(seed=seed, dtype=torch.float64)
    out, (_, mask) = compare(
        lambda x, y, r: random_mask_loss(x, y, r, fraction=0.3, seed=seed),
        lambda x, y, r: R.random_mask(x, y, r, fraction=0.3, seed=seed),
        seed,
    )
    assert torch.equal(out.mask, mask)
    n = int((labels[:, 1:] != -100).sum())
    assert int(out.mask.sum()) == -(-3 * n // 10)  # exactly ceil(0.3 n)
    other = random_mask_loss(logits, labels, ref, fraction=0.3, seed=seed + 100).mask
    assert torch.equal(other, R.random_mask_targets(labels, 0.3, seed + 100))
    assert not torch.equal(other, out.mask) or n < 4


def test_masks_only_on_valid_targets():
    logits, labels, ref = make_batch(seed=5, dtype=torch.float64)
    out = eksft_loss(logits, labels, ref, rho=1.0)
    assert not out.mask[labels == -100].any()
    assert not out.mask[:, 0].any()  # position 0 is never a target: no row predicts it
