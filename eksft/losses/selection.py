"""Token selection: the paper's top-k rank rule, the authors' ``torch.topk`` rule, and seeded random masks.

All functions take *detached* 1-D statistics: the mask is a discrete decision and carries no gradient (docs/losses.md,
EKSFT step 1).
"""

from __future__ import annotations

import math

import torch

SELECTIONS = ("union", "intersection", "entropy", "kl")
#: Where the Top-K runs: over a micro-batch's valid targets, per sequence, or over every data-parallel process's
#: targets ("global": eksft.losses.eksft_global, which needs the process group).
SCOPES = ("micro_batch", "sequence", "global")
#: The scopes one loss call computes by itself.
LOCAL_SCOPES = SCOPES[:2]


def paper_k(rho: float, n: int) -> int:
    """k = ceil(rho * |T|) (paper Eq. 7). Rounded first so 0.2 * 10 is 2, not 3 from float error."""
    return min(n, math.ceil(round(rho * n, 9)))


def rank_topk(values: torch.Tensor, k: int) -> tuple[torch.Tensor, float]:
    """The paper's Top-K (Eq. 6-7): select t with rank(t) = #{i : v_i >= v_t} <= k.

    Equivalent closed form: select v_t > v_(k+1), the (k+1)-th largest value. Ties at the boundary all get the
    larger rank and are left out, so fewer than k tokens may be chosen and an all-equal vector selects nothing.
    Returns the (n,) bool selection and the threshold (masked iff strictly above it; the minimum when k >= n).
    """
    n = values.numel()
    if n == 0 or k <= 0:
        return torch.zeros(n, dtype=torch.bool, device=values.device), float(values.max()) if n else 0.0
    if k >= n:
        return torch.ones(n, dtype=torch.bool, device=values.device), float(values.min())
    cut = torch.topk(values, k + 1, sorted=True).values[-1]
    return values > cut, float(cut)


def grouped(fn, values: torch.Tensor, groups: torch.Tensor | None, *args) -> tuple[torch.Tensor, float]:
    """Apply a 1-D selection per group (``scope="sequence"``) or once (``groups=None``).

    The returned threshold is the mean of the per-group thresholds.
    """
    if groups is None:
        return fn(values, *args)
    out = torch.zeros(values.numel(), dtype=torch.bool, device=values.device)
    thresholds = []
    for g in torch.unique(groups):
        idx = (groups == g).nonzero(as_tuple=True)[0]
        sel, thr = fn(values[idx], *args)
        out[idx] = sel
        thresholds.append(thr)
    return out, (sum(thresholds) / len(thresholds) if thresholds else 0.0)


def paper_select(values: torch.Tensor, rho: float, groups: torch.Tensor | None) -> tuple[torch.Tensor, float]:
    return grouped(lambda v: rank_topk(v, paper_k(rho, v.numel())), values, groups)


def official_select(values: torch.Tensor, rho: float, groups: torch.Tensor | None) -> tuple[torch.Tensor, float]:
    """The authors' rule: k = floor(rho * N), ``torch.topk`` breaks ties, k = 0 selects nothing."""

    def one(v: torch.Tensor):
        k = min(v.numel(), math.floor(round(rho * v.numel(), 9)))
        sel = torch.zeros(v.numel(), dtype=torch.bool, device=v.device)
        if k == 0:
            return sel, float(v.max()) if v.numel() else 0.0
        top = torch.topk(v, k)
        sel[top.indices] = True
        return sel, float(top.values[-1])

    return grouped(one, values, groups)


def combine(m_h: torch.Tensor, m_kl: torch.Tensor, selection: str) -> torch.Tensor:
    if selection == "union":
        return m_h | m_kl
    if selection == "intersection":
        return m_h & m_kl
    if selection == "entropy":
        return m_h.clone()
    return m_kl.clone()


def random_select(n: int, fraction: float, seed: int, device) -> torch.Tensor:
    """Exactly ceil(fraction * n) uniformly random targets, reproducible from ``seed`` (CPU generator)."""
    k = paper_k(fraction, n)
    gen = torch.Generator().manual_seed(int(seed))
    sel = torch.zeros(n, dtype=torch.bool)
    sel[torch.randperm(n, generator=gen)[:k]] = True
    return sel.to(device)


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    union = int((a | b).sum())
    return int((a & b).sum()) / union if union else 0.0
