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
from .checks import check_choice, check_nonnegative
from .targets import entropy_from_logprobs, log_probs, log_softmax32, upcast

EAFT_ENTROPIES = ("topk", "full")
#: What the top-k entropy is divided by: ``authors``, the constant of the authors' code (LLaMA-Factory's
#: ``_eaft_cross_entropy``, k = 20: ln 20 = 2.9957 rounded), or ``ln_k``, which keeps h in [0, 1] for every k.
EAFT_NORMALIZERS = ("authors", "ln_k")
AUTHORS_DIVISOR = 3.0


def topk_divisor(normalizer: str, k: int) -> float:
    """The divisor of the top-``k`` entropy: 3.0 (``authors``) or ln k (``ln_k``)."""
    check_choice("normalizer", normalizer, EAFT_NORMALIZERS)
    return AUTHORS_DIVISOR if normalizer == "authors" else math.log(k)


def normalized_entropy(
    h: torch.Tensor, top: torch.Tensor | None, vocab: int, normalizer: str = "authors"
) -> torch.Tensor:
    """``(N,)`` EAFT's entropy statistic, detached: the full entropy ``h`` (nats) over ln V when ``top`` is None
    (``entropy="full"``), else the entropy of the softmax over ``top``, the ``(N, k)`` largest logits of each row,
    over :func:`topk_divisor` (``entropy="topk"``; at most ln k / 3 with ``authors``). The logits path and the fused
    head's fast path both call this."""
    if top is None:
        return h.detach() / math.log(vocab)
    logq = log_softmax32(top.detach())  # (N, k)
    return entropy_from_logprobs(logq) / topk_divisor(normalizer, top.shape[-1])


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
    normalizer="authors",
    normalization="mean",
    ignore_index=-100,
    num_items_in_batch=None,
    position_ids=None,
):
    """EAFT: per-token −sg(h)^α·log p(y), h the normalised entropy of the row that scores y
    (:func:`normalized_entropy`): ``entropy="topk"`` (default) the entropy of the softmax over the row's
    k = min(``topk``, V) largest logits divided by 3.0 (``normalizer="authors"``, default: the authors' code, k = 20
    in their runs, so this is LLaMA-Factory's loss exactly) or by ln k (``normalizer="ln_k"``: h in [0, 1] for any
    k; the loss is the authors' × (3 / ln k)^α); ``entropy="full"`` the full-vocabulary entropy over ln V.

    α = 0 is plain SFT. Metrics add ``weight_mean`` (of sg(h)^α) and ``eaft_entropy_mean`` (of h): means over
    targets, so the fused head's chunks add up to the same values.
    """
    check_nonnegative(alpha=alpha)
    check_choice("entropy", entropy, EAFT_ENTROPIES)
    check_choice("normalizer", normalizer, EAFT_NORMALIZERS)
    if not (isinstance(topk, int) and not isinstance(topk, bool) and topk >= 2):
        raise ValueError(f"`topk` must be an integer >= 2 (the weight divides by ln k), got {topk!r}.")
    t = prepare(logits, labels, ignore_index, normalization)
    names = ("weight_mean", "eaft_entropy_mean")
    if t.n == 0:
        return empty(logits, *names)
    logz, logp = log_probs(t.rows, t.tokens)
    top = top_logits(t.rows, topk) if entropy == "topk" else None
    h = normalized_entropy(entropy_from_logprobs(logz.detach()), top, logits.shape[-1], normalizer)
    w = h.pow(alpha)  # 0 ** 0 = 1: alpha = 0 is SFT even on one-hot rows
    stats = dict(zip(names, (w.mean(), h.mean())))
    return finish(-w * logp, logz, logp, t, normalization, num_items_in_batch, **stats)
