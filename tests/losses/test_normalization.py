"""Normalisation: with normalization="tokens" the summed gradient of micro-batches equals the gradient of the
whole batch (scope="sequence" for EKSFT, any split for the per-token losses); packed sequences via position_ids
select exactly like separate rows. CPU, < 2 s."""

import pytest
import torch

from eksft.losses import LOSSES, eksft_loss

from .conftest import make_batch
from .test_gradcheck import call


def split_grad(name, logits, labels, ref, splits, **kw):
    n_total = int((labels[:, 1:] != -100).sum())
    x = logits.clone().requires_grad_(True)
    total = 0.0
    for idx in splits:
        loss = call(name, x[idx], labels[idx], ref[idx], normalization="tokens", num_items_in_batch=n_total, **kw)
        loss.backward()
        total += loss.item()
    return x.grad, total


@pytest.mark.parametrize(
    "name", ["eksft", "sft", "dft", "gem", "asft", "sed_sft", "global_reg", "iw_sft", "psft", "eaft"]
)
def test_tokens_normalization_is_split_invariant(name):
    logits, labels, ref = make_batch(B=4, T=10, V=11, seed=21, dtype=torch.float64)
    kw = {"scope": "sequence", "rho": 0.3} if name == "eksft" else {}
    whole_grad, whole = split_grad(name, logits, labels, ref, [slice(0, 4)], **kw)
    parts_grad, parts = split_grad(name, logits, labels, ref, [slice(0, 1), slice(1, 3), slice(3, 4)], **kw)
    torch.testing.assert_close(parts_grad, whole_grad, rtol=1e-10, atol=1e-12)
    assert parts == pytest.approx(whole, rel=1e-10)


def test_mean_normalization_is_not_split_invariant_for_eksft():
    """The paper's per-micro-batch mean weights tokens by micro-batch size: documented, and detected here."""
    logits, labels, ref = make_batch(B=4, T=10, V=11, seed=22, dtype=torch.float64)
    x = logits.clone().requires_grad_(True)
    eksft_loss(x, labels, ref).loss.backward()
    y = logits.clone().requires_grad_(True)
    for idx in (slice(0, 1), slice(1, 4)):
        (eksft_loss(y[idx], labels[idx], ref[idx]).loss / 2).backward()
    assert not torch.allclose(x.grad, y.grad)


def test_packed_sequences_match_separate_rows():
    """Two sequences packed in one row with position_ids restarting at 0 select like two rows, scope=sequence."""
    logits, labels, ref = make_batch(B=2, T=8, V=9, seed=23, ignore_frac=0.0)
    labels[:, 0] = -100
    sep = eksft_loss(logits, labels, ref, scope="sequence", rho=0.4)
    packed = eksft_loss(
        logits.reshape(1, 16, 9),
        labels.reshape(1, 16),
        ref.reshape(1, 16, 9),
        scope="sequence",
        rho=0.4,
        position_ids=torch.arange(8).repeat(2)[None],
    )
    # Packed rows also score the first token of sequence 2 from sequence 1's last row unless it is -100 (it is).
    assert torch.equal(packed.mask.reshape(2, 8), sep.mask)
    assert packed.loss.item() == pytest.approx(sep.loss.item(), rel=1e-6)


def test_loss_table_is_complete():
    assert set(LOSSES) == {
        "sft",
        "eksft",
        "dft",
        "iw_sft",
        "psft",
        "asft",
        "sed_sft",
        "gem",
        "global_reg",
        "random_mask",
        "eaft",
    }


def test_step_scale_is_the_whole_rule():
    """``targets.step_scale``, the trainer's half of the normalisation (tests/train/test_trainer_loss.py and
    tests/train/test_multiprocess.py check it end to end): per case, the factor that makes the accumulated,
    DDP-averaged gradient the step's gradient."""
    from eksft.losses.targets import step_scale

    kw = dict(accumulation_steps=4, processes=2)
    # tokens with a step-wide count: micro-batch losses already sum to the step's loss; DDP's mean is undone
    assert step_scale("tokens", 40, counts_span_processes=True, **kw) == 2.0
    assert step_scale("tokens", 40, counts_span_processes=False, **kw) == 1.0  # count of this process only
    # per-micro-batch means: the step's loss is their mean over accumulation steps
    assert step_scale("mean", 40, counts_span_processes=True, **kw) == 0.25
    assert step_scale("tokens", None, counts_span_processes=True, **kw) == 0.25
    # scope="global" with mean: set sizes count every process, so the per-process losses sum to the step's
    assert step_scale("mean", None, counts_span_processes=True, sets_span_processes=True, **kw) == 0.5
