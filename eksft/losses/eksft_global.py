"""EKSFT with ``scope="global"``: one Top-K threshold over the valid targets of *all* data-parallel processes
(docs/losses.md, EKSFT step 1).

``eksft.losses`` selects within one process. Here each process computes its per-target statistics
(``eksft.losses.eksft.paper_statistics``, the numbers ``eksft_loss`` selects on), the detached values are
all-gathered (variable lengths, padded), :func:`eksft.losses.plan_eksft` selects on the concatenation exactly as
``scope="micro_batch"`` does on one process, and each process forms ``EksftPlan.objective`` on its own slice
(``EksftPlan.part``). No formula lives here: only the gather. (The process-count factor of ``mean``, whose
denominators count every process's targets, is applied with the rest of the normalisation: ``targets.step_scale``.)

Metrics: every process logs the plan's values, which are over all processes, with ``num_targets`` = its own count,
so the trainer's ``num_targets``-weighted reduction over processes (eksft/train/step_log.py) gives the global
values back and counts each target once.

Without an initialised process group this is ``eksft_loss(scope="micro_batch")`` (the same set on one process).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from .checks import check_inputs
from .eksft import eksft_loss, empty_result, paper_statistics, plan_eksft
from .targets import LossResult, gather_targets


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def all_gather_cat(values: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Concatenate a tensor across processes along dim 0 (lengths may differ). Returns ``(all, offset of this
    rank)``. Every process must call it, also one with no rows: a collective one rank skips hangs the others."""
    if not distributed():
        return values, 0
    world, rank = dist.get_world_size(), dist.get_rank()
    n = torch.tensor([values.shape[0]], device=values.device, dtype=torch.long)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    sizes = [int(s) for s in sizes]
    padded = torch.zeros((max(sizes), *values.shape[1:]), dtype=values.dtype, device=values.device)
    padded[: values.shape[0]] = values
    chunks = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(chunks, padded)
    return torch.cat([c[:s] for c, s in zip(chunks, sizes, strict=True)]), sum(sizes[:rank])


def global_eksft_loss(
    logits,
    labels,
    ref_logits,
    *,
    rho,
    lambda_entropy,
    lambda_kl,
    selection,
    normalization,
    entropy_unit="normalized",
    ignore_index=-100,
    num_items_in_batch=None,
    position_ids=None,
) -> LossResult:
    """``eksft_loss`` (``variant="paper"``; EKSFTConfig refuses ``scope="global"`` with any other) with one Top-K over
    the targets of every process. With ``mean`` the returned loss is this process's share: the losses of all
    processes *sum* to the step's loss (the trainer's ``targets.step_scale`` undoes DDP's average)."""
    kw = dict(
        rho=rho,
        lambda_entropy=lambda_entropy,
        lambda_kl=lambda_kl,
        selection=selection,
        normalization=normalization,
        entropy_unit=entropy_unit,
    )
    if not distributed():
        return eksft_loss(
            logits,
            labels,
            ref_logits,
            scope="micro_batch",
            ignore_index=ignore_index,
            num_items_in_batch=num_items_in_batch,
            position_ids=position_ids,
            **kw,
        )
    check_inputs(logits, labels, ignore_index, ref_logits)
    t = gather_targets(logits, labels, ignore_index, position_ids)
    logp, h, kl = paper_statistics(t, ref_logits)
    stats, offset = all_gather_cat(torch.stack([logp, h, kl], dim=1).detach())  # (N over all processes, 3)
    if stats.shape[0] == 0:
        return empty_result(logits, labels)
    plan = plan_eksft(
        stats[:, 0],
        stats[:, 1],
        stats[:, 2],
        torch.zeros(stats.shape[0], dtype=torch.long, device=stats.device),
        scope="micro_batch",
        variant="paper",
        num_items_in_batch=num_items_in_batch,
        vocab_size=logits.shape[-1],
        **kw,
    ).part(slice(offset, offset + t.n))
    plan.metrics["num_targets"] = float(t.n)  # this process's share: the trainer sums it over processes
    return plan.result(t, logp, h, kl)
