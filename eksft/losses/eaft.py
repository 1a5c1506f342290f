"""EAFT, Entropy-Adaptive Fine-Tuning (Diao, Yang, Gong et al. 2026, arXiv 2601.02151): each target's cross-entropy
weighted by a detached power of the model's own normalised entropy at that position.

The gate is the opposite of EKSFT's: EAFT keeps every target and turns *down* the low-entropy ones (the model is
confident, so a low-probability label there is a "confident conflict"), where EKSFT takes the *high*-entropy ones out
of cross-entropy. Definitions, defaults and how LLaMA-Factory's and Axolotl's versions map onto the options:
docs/losses.md ("EAFT" and "Same loss elsewhere").
"""

from __future__ import annotations

import math

import torch

from .baselines import empty, finish, prepare
from .tokens import check_choice, check_nonnegative, entropy_from_logprobs, log_probs, log_softmax32, upcast

EAFT_ENTROPIES = ("topk", "full")


def normalized_entropy(h: torch.Tensor, top: torch.Tensor | None, vocab: int) -> torch.Tensor:
    """``(N,)`` EAFT's entropy statistic in [0, 1], detached: the full entropy ``h`` (nats) over ln V when ``top`` is
    None (``entropy="full"``), else the entropy of the softmax over ``top``, the ``(N, k)`` largest logits of each
    row, over ln k (``entropy="topk"``). The logits path and the fused head's fast path both call this."""
    if top is None:
        return h.detach() / math.log(vocab)
    logq = log_softmax32(top.detach())  # (N, k)
    return entropy_from_logprobs(logq) / math.log(top.shape[-1])


def top_logits(rows: torch.Tensor, topk: int) -> torch.Tensor:
    """``(N, min(topk, V))`` largest logits of each row, detached, at least fp32."""
    return torch.topk(upcast(rows.detach()), min(topk, rows.shape[-1]), dim=-1).values


def eaft_loss(
    logits,
    labels,
    *,
    alpha=1.0,
    entropy="topk",
    topk=20,
    normalization="mean",
    ignore_index=-100,
    num_items_in_batch=None,
    position_ids=None,
):
    """EAFT: per-token −sg(h)^α·log p(y), h the normalised entropy of the row that scores y
    (:func:`normalized_entropy`): ``entropy="topk"`` (default) the entropy of the softmax over the row's
    k = min(``topk``, V) largest logits over ln k, the authors' statistic (k = 20 in their runs); ``entropy="full"``
    the full-vocabulary entropy over ln V.

    α = 0 is plain SFT. Metrics add ``weight_mean`` (of sg(h)^α) and ``eaft_entropy_mean`` (of h): means over
    targets, so the fused head's chunks add up to the same values.
    """
    check_nonnegative(alpha=alpha)
    check_choice("entropy", entropy, EAFT_ENTROPIES)
    if not (isinstance(topk, int) and not isinstance(topk, bool) and topk >= 2):
        raise ValueError(f"`topk` must be an integer >= 2 (the weight divides by ln k), got {topk!r}.")
    t = prepare(logits, labels, ignore_index, normalization)
    names = ("weight_mean", "eaft_entropy_mean")
    if t.n == 0:
        return empty(logits, *names)
    logz, logp = log_probs(t.rows, t.tokens)
    top = top_logits(t.rows, topk) if entropy == "topk" else None
    h = normalized_entropy(entropy_from_logprobs(logz.detach()), top, logits.shape[-1])
    w = h.pow(alpha)  # 0 ** 0 = 1: alpha = 0 is SFT even on one-hot rows
    stats = dict(zip(names, (w.mean(), h.mean())))
    return finish(-w * logp, logz, logp, t, normalization, num_items_in_batch, **stats)
