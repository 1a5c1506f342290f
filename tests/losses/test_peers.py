"""Every loss that a peer framework also ships, against that framework's definition (docs/losses.md, "Same loss
elsewhere"). CPU; the TRL part builds a tiny random Llama; a few seconds.

Each peer's published loss is restated here on its own, in its own layout (shifted, flattened rows, its own
normalisation: a mean over the valid targets, or the sum over ``num_items_in_batch`` that transformers passes to a
``compute_loss_func``), from the code read at:

* LLaMA-Factory ``src/llamafactory/train/trainer_utils.py`` (``_dft_cross_entropy``, ``_asft_cross_entropy`` with
  ``_kl_divergence``, ``_eaft_cross_entropy``; EAFT contributed by the EAFT authors, commit e944dc4), selected by
  ``use_dft_loss``, ``use_asft_loss`` + ``asft_alpha``, ``use_eaft_loss`` + ``eaft_alpha``;
* Axolotl ``src/axolotl/monkeypatch/loss/eaft.py`` (``use_eaft``, ``eaft_alpha``, ``eaft_k``);
* transformers' causal-LM loss (``model(..., labels=...)``), which LLaMA-Factory's and Axolotl's plain SFT use;
* TRL 1.16 ``SFTTrainer.compute_loss`` (``loss_type`` ``nll`` / ``dft``), and TRL itself: its fused LM head
  (``trl.trainer.utils.add_fused_lm_head``) on a tiny model gives the per-token log-probabilities and entropies its
  trainer turns into the loss and the ``entropy`` metric.

eksft's loss and its gradient w.r.t. the logits (or the model's parameters, for TRL) must equal the peer's on random
logits with ignored positions. EAFT's defaults are the authors' code (LLaMA-Factory: the top-20 entropy over 3.0),
so that comparison has no factor. One deliberate difference, a constant factor on the whole loss (so the same
gradient direction, and the same AdamW updates but for its epsilon), is asserted as such:

* Axolotl's EAFT does not normalise the entropy: Axolotl's loss = eksft's x 3.0^alpha (eksft's default divisor) or
  x (ln k)^alpha (``eaft_normalizer: ln_k``).

LLaMA-Factory's ASFT is always a mean over the micro-batch's valid targets (it ignores ``num_items_in_batch``): it is
eksft's ``asft`` with ``normalization="mean"`` only.
"""

from __future__ import annotations

import math
import os
import re

import pytest
import torch
import torch.nn.functional as F

from eksft.losses import LOSSES, asft_loss, dft_loss, eaft_loss, fused_head_loss, sft_loss

from .conftest import make_batch

V = 37  # > 20, so the peers' top-20 entropy is a real truncation
NUM_ITEMS = (None, 50)  # no count (a mean over valid targets) / a step-wide count, as transformers passes it


# ------------------------------------------------------------------------------------ the peers' losses, restated
def _reduce(per_token: torch.Tensor, num_items_in_batch) -> torch.Tensor:
    """The reduction LLaMA-Factory, Axolotl and TRL share: sum / num_items_in_batch when given, else the mean."""
    return per_token.mean() if num_items_in_batch is None else per_token.sum() / num_items_in_batch


def _flat_targets(logits, labels):
    """Their layout: rows 0..T-2 against labels 1..T-1, flattened, ignored labels dropped."""
    rows = logits[:, :-1].reshape(-1, logits.shape[-1])
    y = labels[:, 1:].reshape(-1)
    keep = y != -100
    return rows[keep], y[keep]


def llamafactory_dft(logits, labels, num_items_in_batch=None):
    rows, y = _flat_targets(logits, labels)
    ce = F.cross_entropy(rows, y, reduction="none")
    return _reduce(ce * torch.exp(-ce).detach(), num_items_in_batch)


def llamafactory_asft(logits, labels, ref_logits, asft_alpha=0.1):
    """DFT (always a mean: their ASFT passes no count) + asft_alpha x the masked mean of KL(q || p) (``F.kl_div``)."""
    rows, y = _flat_targets(logits, labels)
    ref_rows, _ = _flat_targets(ref_logits, labels)
    ce = F.cross_entropy(rows, y, reduction="none")
    dft = (ce * torch.exp(-ce).detach()).mean()
    kl = F.kl_div(F.log_softmax(rows, -1), F.softmax(ref_rows, -1), reduction="none").sum(-1)
    return dft + asft_alpha * kl.mean()


def _topk_entropy(rows, k, eps=0.0):
    top = torch.topk(rows.detach(), k, dim=-1).values
    if eps:  # Axolotl: softmax, then log(p + 1e-10)
        p = F.softmax(top, -1)
        return -(p * torch.log(p + eps)).sum(-1)
    logq = top - torch.logsumexp(top, -1, keepdim=True)
    return -(logq.exp() * logq).sum(-1)


def llamafactory_eaft(logits, labels, num_items_in_batch=None, alpha=1.0):
    rows, y = _flat_targets(logits, labels)
    w = (_topk_entropy(rows, 20) / 3.0) ** alpha
    return _reduce(F.cross_entropy(rows, y, reduction="none") * w, num_items_in_batch)


def axolotl_eaft(logits, labels, num_items_in_batch=None, alpha=1.0, k=20):
    rows, y = _flat_targets(logits, labels)
    w = _topk_entropy(rows, min(k, rows.shape[-1]), eps=1e-10) ** alpha
    return _reduce(F.cross_entropy(rows, y, reduction="none") * w, num_items_in_batch)


def trl_loss(log_probs, label_mask, loss_type, num_items_in_batch=None):
    """TRL's SFTTrainer on per-token log-probabilities (zero where ignored): -log p, times sg(p) for dft, summed and
    divided by num_items_in_batch or the number of valid labels (at least 1)."""
    per_token = -log_probs
    if loss_type == "dft":
        per_token = per_token * log_probs.exp().detach()
    count = label_mask.sum() if num_items_in_batch is None else num_items_in_batch
    return per_token.sum() / torch.as_tensor(count).clamp(min=1)


def trl_from_logits(logits, labels, loss_type, num_items_in_batch=None):
    """TRL's per-token log-probabilities computed from full logits (its fused head's layout: (B, T - 1))."""
    logz = torch.log_softmax(logits[:, :-1], -1)
    mask = labels[:, 1:] != -100
    lp = logz.gather(-1, labels[:, 1:].clamp(min=0)[..., None]).squeeze(-1).masked_fill(~mask, 0.0)
    return trl_loss(lp, mask, loss_type, num_items_in_batch)


# ---------------------------------------------------------------------------------------------------- comparison
def compare(ours, theirs, seed, factor=1.0, rtol=1e-9, **batch_kw):
    """``theirs(x) == factor * ours(x)`` in value and in gradient w.r.t. the logits (float64)."""
    logits, labels, ref = make_batch(seed=seed, V=V, dtype=torch.float64, **batch_kw)
    a, b = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    mine, peer = ours(a, labels, ref), theirs(b, labels, ref)
    torch.testing.assert_close(peer, factor * mine, rtol=rtol, atol=1e-12)
    mine.backward()
    peer.backward()
    torch.testing.assert_close(b.grad, factor * a.grad, rtol=rtol * 10, atol=1e-12)
    assert a.grad.abs().sum() > 0


def normalization(num_items):
    return (
        dict(normalization="mean") if num_items is None else dict(normalization="tokens", num_items_in_batch=num_items)
    )


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("num_items", NUM_ITEMS)
def test_dft_is_llamafactory_use_dft_loss(seed, num_items):
    compare(
        lambda x, y, r: dft_loss(x, y, **normalization(num_items)).loss,
        lambda x, y, r: llamafactory_dft(x, y, num_items),
        seed,
    )


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("asft_alpha", [0.1, 0.7])
def test_asft_is_llamafactory_use_asft_loss(seed, asft_alpha):
    """Their ASFT is a per-micro-batch mean whatever the trainer passes: eksft's asft with normalization='mean'."""
    compare(
        lambda x, y, r: asft_loss(x, y, r, lambda_kl=asft_alpha).loss,
        lambda x, y, r: llamafactory_asft(x, y, r, asft_alpha),
        seed,
    )


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("num_items", NUM_ITEMS)
@pytest.mark.parametrize("alpha", [1.0, 0.5, 2.0])
def test_eaft_is_llamafactory_use_eaft_loss(seed, num_items, alpha):
    """eksft's default EAFT (top-20 entropy over the authors' 3.0) is LLaMA-Factory's (the EAFT authors' code): the
    same loss and gradient, no factor, to float64 rounding."""
    compare(
        lambda x, y, r: eaft_loss(x, y, alpha=alpha, **normalization(num_items)).loss,
        lambda x, y, r: llamafactory_eaft(x, y, num_items, alpha),
        seed,
        rtol=1e-12,
    )


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_eaft_ln_k_is_llamafactory_times_3_over_ln20(seed, alpha):
    """``eaft_normalizer: ln_k`` divides by ln 20 = 2.9957 instead: LLaMA-Factory's loss = eksft's x (ln 20 / 3)^alpha
    (eksft's = theirs x 1.0014 at alpha = 1)."""
    compare(
        lambda x, y, r: eaft_loss(x, y, alpha=alpha, normalizer="ln_k").loss,
        lambda x, y, r: llamafactory_eaft(x, y, None, alpha),
        seed,
        factor=(math.log(20) / 3.0) ** alpha,
    )


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("num_items", NUM_ITEMS)
@pytest.mark.parametrize("alpha,k", [(1.0, 20), (0.5, 5), (2.0, 8)])
@pytest.mark.parametrize("normalizer", ["authors", "ln_k"])
def test_eaft_is_axolotl_use_eaft_up_to_its_divisor(seed, num_items, alpha, k, normalizer):
    """Deliberate difference: Axolotl does not normalise the top-k entropy (and adds 1e-10 inside its log), so its
    loss and gradient are eksft's (eaft_topk = eaft_k) times the divisor^alpha: 3.0^alpha by default, (ln k)^alpha
    with normalizer='ln_k'."""
    compare(
        lambda x, y, r: eaft_loss(x, y, alpha=alpha, topk=k, normalizer=normalizer, **normalization(num_items)).loss,
        lambda x, y, r: axolotl_eaft(x, y, num_items, alpha, k),
        seed,
        factor=(3.0 if normalizer == "authors" else math.log(k)) ** alpha,
        rtol=1e-7,  # Axolotl's epsilon moves the entropy by up to k * 1e-10
    )


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("num_items", NUM_ITEMS)
@pytest.mark.parametrize("loss_type", ["nll", "dft"])
def test_sft_and_dft_are_trl_loss_type(seed, num_items, loss_type):
    ours = {"nll": sft_loss, "dft": dft_loss}[loss_type]
    compare(
        lambda x, y, r: ours(x, y, **normalization(num_items)).loss,
        lambda x, y, r: trl_from_logits(x, y, loss_type, num_items),
        seed,
    )


# --------------------------------------------------------------------------------------------------- TRL itself
def tiny_trl_model(seed=0):
    from transformers import LlamaForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    from eksft.models.tiny import tiny_config

    config = tiny_config(vocab_size=97, max_position_embeddings=64)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    add_fused_lm_head(model, outputs=("log_probs", "entropy"))
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, config.vocab_size, (3, 17), generator=g)
    labels = input_ids.clone()
    labels[:, :5] = -100  # prompt
    labels[torch.rand(labels.shape, generator=g) < 0.2] = -100
    return model, input_ids, labels


def param_grads(model, loss):
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.autograd.grad(loss, params)


@pytest.mark.parametrize("num_items", NUM_ITEMS)
@pytest.mark.parametrize("loss_type", ["nll", "dft"])
def test_sft_and_dft_match_trl_fused_head(loss_type, num_items):
    """TRL's own fused LM head on a tiny Llama: its SFTTrainer's loss (from the head's per-token log-probabilities)
    and ``entropy`` metric against eksft's sft/dft loss and ``entropy_mean``, on the logits path and on eksft's fused
    head; parameter gradients too. TRL's head computes in fp32, so fp32 tolerances."""
    model, input_ids, labels = tiny_trl_model()
    out = model(input_ids=input_ids, labels=labels, fused_lm_head=True)
    theirs = trl_loss(out.log_probs, out.label_mask, loss_type, num_items)
    trl_entropy = float(out.entropy.detach().sum() / out.label_mask.sum())
    ours_fn = {"nll": sft_loss, "dft": dft_loss}[loss_type]
    mine = ours_fn(model(input_ids=input_ids).logits, labels, **normalization(num_items))
    hidden = model.model(input_ids=input_ids).last_hidden_state
    fused = fused_head_loss(
        {"nll": "sft", "dft": "dft"}[loss_type], hidden, model.lm_head.weight, labels, **normalization(num_items)
    )
    for r in (mine, fused):
        torch.testing.assert_close(r.loss, theirs, rtol=1e-5, atol=1e-6)
        assert r.metrics["entropy_mean"] == pytest.approx(trl_entropy, rel=1e-5)
        assert r.metrics["num_targets"] == float(out.label_mask.sum())
        for g_ours, g_trl in zip(param_grads(model, r.loss), param_grads(model, theirs)):
            torch.testing.assert_close(g_ours, g_trl, rtol=1e-4, atol=1e-6)
        theirs = trl_loss(  # a fresh graph for the next comparison
            model(input_ids=input_ids, labels=labels, fused_lm_head=True).log_probs,
            out.label_mask,
            loss_type,
            num_items,
        )


@pytest.mark.parametrize("num_items", NUM_ITEMS)
def test_sft_is_the_transformers_causal_lm_loss(num_items):
    """LLaMA-Factory's and Axolotl's plain SFT is the model's own loss (transformers' causal-LM loss, which their
    trainers call with ``num_items_in_batch``): eksft's sft, value and parameter gradients."""
    model, input_ids, labels = tiny_trl_model(seed=1)
    kw = {} if num_items is None else {"num_items_in_batch": num_items}
    theirs = model(input_ids=input_ids, labels=labels, **kw).loss
    mine = sft_loss(model(input_ids=input_ids).logits, labels, **normalization(num_items))
    torch.testing.assert_close(mine.loss, theirs, rtol=1e-6, atol=1e-7)
    for g_ours, g_hf in zip(param_grads(model, mine.loss), param_grads(model, theirs)):
        torch.testing.assert_close(g_ours, g_hf, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------------------------------------- the docs' table
PEER_TESTED = {"sft", "dft", "asft", "eaft"}  # the losses the tests above check against a peer


def test_docs_table_names_every_loss_and_the_tested_peers():
    """docs/losses.md "Same loss elsewhere": every loss in exactly one row; the rows that name a peer flag are the
    losses this module tests against that peer."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(root, "docs", "losses.md"), encoding="utf-8") as f:
        text = f.read()
    section = text.split("## Same loss elsewhere", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    named, with_peer = [], set()
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        losses = re.findall(r"`(\w+)`", cells[0])
        named += losses
        if any(c != "none" for c in cells[1:4]):
            with_peer.update(losses)
    assert sorted(named) == sorted(LOSSES)
    assert with_peer == PEER_TESTED
