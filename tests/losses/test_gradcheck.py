"""torch.autograd.gradcheck in float64 for every loss (and every EKSFT option). CPU, a few seconds."""

import math

import pytest
import torch

from eksft.losses import LOSSES, SPECS, target_logprobs

from .conftest import make_batch


def call(name, logits, labels, ref, **kw):
    """Loss ``name`` with the extra inputs its row of ``SPECS`` names (``ref`` stands in for the reference)."""
    spec = SPECS[name]
    third = {"ref_logits": (ref,), "old_logps": (target_logprobs(ref, labels),), None: ()}[spec.third]
    if "tau" in spec.per_batch:
        kw.setdefault("tau", 0.7)
    return spec.fn(logits, labels, *third, **kw).loss


STOP_GRADIENT = (
    "dft",
    "iw_sft",
    "asft",
    "gem",
    "eaft",
)  # losses with a stop-gradient on a smooth function of the logits


@pytest.mark.parametrize("name", sorted(set(LOSSES) - set(STOP_GRADIENT)))
@pytest.mark.parametrize("normalization", ["mean", "tokens"])
def test_gradcheck_every_loss(name, normalization):
    logits, labels, ref = make_batch(B=2, T=6, V=5, seed=11, dtype=torch.float64)
    x = logits.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: call(name, z, labels, ref, normalization=normalization), (x,))


def frozen_surrogate(name, z0, labels, ref):
    """The objective with every sg(.) evaluated at z0 and held constant: its gradient at z0 is the loss's gradient.

    Finite differences cannot see a stop-gradient, so for these losses gradcheck runs on this surrogate and the
    library's autograd gradient is then compared with the surrogate's at z0.
    """
    valid = labels != -100
    valid[:, 0] = False
    y = labels[valid]
    rows0, ref_rows = z0[:, :-1][valid[:, 1:]], ref[:, :-1][valid[:, 1:]]
    p0_y = torch.softmax(rows0, -1).gather(-1, y[:, None]).squeeze(-1)
    q = torch.softmax(ref_rows, -1)
    seq = torch.arange(labels.shape[0])[:, None].expand_as(labels)[valid]
    lq_y = torch.log_softmax(ref_rows, -1).gather(-1, y[:, None]).squeeze(-1)
    lp0_y = torch.log(p0_y)
    w_iw = torch.stack([torch.exp((lp0_y - lq_y)[seq == b].mean()).clamp(0, 16) for b in seq.tolist()])
    s = torch.softmax(rows0 / 0.7, -1)
    top = torch.log_softmax(rows0.topk(min(20, rows0.shape[-1]), -1).values, -1)  # EAFT's default: k = min(20, V)
    h_top = -(top.exp() * top).sum(-1) / 3.0  # over the authors' constant (normalizer="authors", the default)

    def f(z):
        logz = torch.log_softmax(z[:, :-1][valid[:, 1:]], -1)
        lp = logz.gather(-1, y[:, None]).squeeze(-1)
        per = {
            "dft": -p0_y * lp,
            "iw_sft": -w_iw * lp,
            "asft": -p0_y * lp + 0.1 * (q * (q.log() - logz)).sum(-1),
            "gem": -lp + (s * logz).sum(-1),
            "eaft": -h_top * lp,
        }[name]
        return per.mean()

    return f


@pytest.mark.parametrize("name", STOP_GRADIENT)
def test_gradcheck_stop_gradient_losses(name):
    logits, labels, ref = make_batch(B=2, T=6, V=5, seed=11, dtype=torch.float64)
    surrogate = frozen_surrogate(name, logits, labels, ref)
    assert torch.autograd.gradcheck(surrogate, (logits.clone().requires_grad_(True),))
    x, y = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    call(name, x, labels, ref).backward()
    surrogate(y).backward()
    torch.testing.assert_close(x.grad, y.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "kw",
    [
        {"selection": "intersection", "rho": 0.5},
        {"selection": "entropy", "scope": "sequence"},
        {"selection": "kl", "rho": 0.3},
        {"variant": "official", "rho": 0.5},
        {"rho": 1.0},
        {"lambda_entropy": 0.0, "lambda_kl": 0.0, "rho": 0.3},
    ],
)
def test_gradcheck_eksft_options(kw):
    logits, labels, ref = make_batch(B=2, T=6, V=5, seed=12, dtype=torch.float64)
    x = logits.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: call("eksft", z, labels, ref, **kw), (x,))


@pytest.mark.parametrize(
    "kw",
    [{"entropy": "full", "alpha": 0.5}, {"topk": 3, "alpha": 2.0}, {"topk": 3, "normalizer": "ln_k"}, {"alpha": 0.0}],
)
def test_gradcheck_eaft_options(kw):
    """EAFT's weight h^alpha is detached: gradcheck on the surrogate with h frozen at z0, then the library's gradient
    against the surrogate's (as for the other stop-gradient losses)."""
    logits, labels, ref = make_batch(B=2, T=6, V=5, seed=13, dtype=torch.float64)
    valid = labels != -100
    valid[:, 0] = False
    y, rows0 = labels[valid], logits[:, :-1][valid[:, 1:]]
    if kw.get("entropy") == "full":
        logz0 = torch.log_softmax(rows0, -1)
        h = -(logz0.exp() * logz0).sum(-1) / math.log(5)
    else:
        top = torch.log_softmax(rows0.topk(kw["topk"] if "topk" in kw else 5, -1).values, -1)
        h = -(top.exp() * top).sum(-1) / (math.log(top.shape[-1]) if kw.get("normalizer") == "ln_k" else 3.0)
    w = h ** kw.get("alpha", 1.0)

    def surrogate(z):
        lp = torch.log_softmax(z[:, :-1][valid[:, 1:]], -1).gather(-1, y[:, None]).squeeze(-1)
        return (-w * lp).mean()

    assert torch.autograd.gradcheck(surrogate, (logits.clone().requires_grad_(True),))
    x, z = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    call("eaft", x, labels, ref, **kw).backward()
    surrogate(z).backward()
    torch.testing.assert_close(x.grad, z.grad, rtol=1e-10, atol=1e-12)
