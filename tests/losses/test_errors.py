"""Bad arguments raise ValueError naming the argument. CPU, < 1 s."""

import pytest
import torch

from eksft.losses import LOSSES, eaft_loss, eksft_loss, psft_loss, sed_sft_loss, sft_loss

from .conftest import make_batch


@pytest.mark.parametrize(
    "kw,needle",
    [
        ({"rho": -0.1}, "rho"),
        ({"rho": 1.5}, "rho"),
        ({"lambda_entropy": -1.0}, "lambda_entropy"),
        ({"lambda_kl": -0.5}, "lambda_kl"),
        ({"selection": "both"}, "selection"),
        ({"scope": "global"}, "scope"),
        ({"normalization": "sum"}, "normalization"),
        ({"variant": "v2"}, "variant"),
    ],
)
def test_bad_options(kw, needle):
    logits, labels, ref = make_batch()
    with pytest.raises(ValueError, match=needle):
        eksft_loss(logits, labels, ref, **kw)


@pytest.mark.parametrize(
    "kw,needle",
    [
        ({"alpha": -1.0}, "alpha"),
        ({"alpha": float("nan")}, "alpha"),
        ({"entropy": "renyi"}, "entropy"),
        ({"topk": 1}, "topk"),
        ({"topk": 2.5}, "topk"),
        ({"topk": True}, "topk"),
        ({"normalizer": "ln20"}, "normalizer"),
    ],
)
def test_bad_eaft_options(kw, needle):
    logits, labels, _ = make_batch()
    with pytest.raises(ValueError, match=needle):
        eaft_loss(logits, labels, **kw)


def test_shape_mismatches():
    logits, labels, ref = make_batch(B=2, T=5, V=7)
    with pytest.raises(ValueError, match="`labels`"):
        eksft_loss(logits, labels[:, :4], ref)
    with pytest.raises(ValueError, match="`ref_logits`"):
        eksft_loss(logits, labels, ref[..., :6])
    with pytest.raises(ValueError, match="`logits`"):
        sft_loss(logits[0], labels)
    with pytest.raises(ValueError, match="`labels`"):
        sft_loss(logits, torch.full((2, 5), 7))  # id 7 is outside a 7-token vocabulary
    with pytest.raises(ValueError, match="`old_logps`"):
        psft_loss(logits, labels, torch.zeros(2, 4))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_logits(bad):
    logits, labels, ref = make_batch()
    broken = logits.clone()
    broken[0, 2, 3] = bad
    with pytest.raises(ValueError, match="`logits` contains NaN or inf"):
        eksft_loss(broken, labels, ref)
    with pytest.raises(ValueError, match="`ref_logits` contains NaN or inf"):
        eksft_loss(logits, labels, broken)
    for name in ("sft", "dft", "gem", "eaft"):
        with pytest.raises(ValueError, match="`logits`"):
            LOSSES[name](broken, labels)


def test_sed_requires_valid_tau():
    logits, labels, _ = make_batch()
    with pytest.raises(ValueError, match="tau"):
        sed_sft_loss(logits, labels, tau=1.5)
    with pytest.raises(TypeError):
        sed_sft_loss(logits, labels)  # no default: tau must come from calibration


def test_num_items_must_be_positive():
    logits, labels, ref = make_batch()
    with pytest.raises(ValueError, match="num_items_in_batch"):
        eksft_loss(logits, labels, ref, normalization="tokens", num_items_in_batch=0)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_handles_an_empty_batch(name):
    from .test_gradcheck import call

    logits = torch.randn(2, 4, 6, requires_grad=True)
    labels = torch.full((2, 4), -100)
    loss = call(name, logits, labels, torch.randn(2, 4, 6))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))
