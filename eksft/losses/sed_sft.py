"""SED-SFT (Chen, Liu, Meng 2026, "Selectively Encouraging Diversity in SFT"): selective diversity regularisation on
low-confidence targets.

Per valid target j: −log p(y) + λ·m_j·(p(y) − ½)², m_j = 1[S_k(p) < τ], S_k = total probability of the k most
likely tokens (detached). τ is the (1 − r) quantile of S_k on the *starting* model over calibration data
(:func:`calibrate_sed_tau`). The published code calibrates with k = 10 and trains with k = 2; we use one k for both.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from .baselines import empty, finish, prepare
from .checks import check_fraction, check_nonnegative
from .targets import LossResult, gather_targets, log_probs, upcast


def topk_mass(rows: torch.Tensor, k: int) -> torch.Tensor:
    """S_k per row: the total probability of the k most likely tokens, fp32, detached. ``rows`` is ``(N, V)``."""
    probs = torch.softmax(upcast(rows.detach()), dim=-1)
    return probs.topk(min(k, probs.shape[-1]), dim=-1).values.sum(-1)


def check_k(k) -> None:
    if not (isinstance(k, int) and k >= 1):
        raise ValueError(f"`k` must be an integer >= 1, got {k!r}.")


def sed_sft_loss(
    logits,
    labels,
    *,
    tau: float,
    lambda_sed=1.0,
    k=2,
    normalization="mean",
    ignore_index=-100,
    num_items_in_batch=None,
    position_ids=None,
) -> LossResult:
    """SED-SFT loss. ``tau`` comes from :func:`calibrate_sed_tau` on the starting model (required, no default)."""
    check_nonnegative(lambda_sed=lambda_sed)
    check_k(k)
    if not (isinstance(tau, (int, float)) and 0.0 <= tau <= 1.0):
        raise ValueError(f"`tau` must be a probability mass in [0, 1] (from calibrate_sed_tau), got {tau!r}.")
    t = prepare(logits, labels, ignore_index, normalization)
    if t.n == 0:
        return empty(logits, "sed_masked_fraction", "topk_mass_mean")
    logz, logp = log_probs(t.rows, t.tokens)
    s_k = topk_mass(t.rows, k)
    m = (s_k < tau).float()
    per_token = -logp + lambda_sed * m * (logp.exp() - 0.5) ** 2
    return finish(
        per_token,
        logz,
        logp,
        t,
        normalization,
        num_items_in_batch,
        sed_masked_fraction=m.mean(),
        topk_mass_mean=s_k.mean(),
    )


@torch.no_grad()
def calibrate_sed_tau(
    model: torch.nn.Module,
    batches: Iterable[dict],
    *,
    k: int = 2,
    r: float = 0.7,
    ignore_index: int = -100,
    max_batches: int | None = None,
) -> float:
    """τ = the (1 − r) quantile of S_k over every valid target of ``batches`` under ``model`` (the start point).

    ``batches`` yields dicts with ``input_ids``, ``labels`` and optionally ``attention_mask`` / ``position_ids``.
    With r = 0.7 about 30% of the calibration targets fall below τ and are regularised.
    """
    check_k(k)
    check_fraction("r", r)
    was_training = model.training
    model.eval()
    masses = []
    device = next(model.parameters()).device
    try:
        for i, batch in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            if "labels" not in batch or "input_ids" not in batch:
                raise ValueError(f"calibration batch {i} needs `input_ids` and `labels`; got keys {sorted(batch)}.")
            inputs = {n: batch[n].to(device) for n in ("input_ids", "attention_mask", "position_ids") if n in batch}
            logits = model(**inputs).logits
            t = gather_targets(logits, batch["labels"].to(device), ignore_index)
            masses.append(topk_mass(t.rows, k).cpu())
    finally:
        model.train(was_training)
    values = torch.cat(masses) if masses else torch.empty(0)
    if values.numel() == 0:
        raise ValueError("calibrate_sed_tau found no valid target in the calibration batches (all labels ignored?).")
    return float(np.quantile(values.double().numpy(), 1.0 - r))
