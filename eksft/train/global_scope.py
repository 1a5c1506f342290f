"""EKSFT with ``scope="global"``: one Top-K threshold over the valid targets of *all* data-parallel processes
(method.md, EKSFT step 2).

``eksft.losses`` selects within one process. Here each process computes its detached per-target statistics, they
are all-gathered (variable lengths, padded), :func:`eksft.losses.plan_eksft` selects on the concatenation exactly as
``scope="micro_batch"`` does on one process, and each process keeps the coefficients of its own slice. No new
formula: statistics come from ``eksft.losses.tokens`` and the combination is the one ``eksft_loss`` documents.

Without an initialised process group this is ``eksft_loss(scope="micro_batch")`` (the same set on one process).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from eksft.losses import LossResult, eksft_loss, plan_eksft
from eksft.losses.eksft import empty_result
from eksft.losses.tokens import (
    check_inputs,
    entropy_from_logprobs,
    gather_targets,
    kl_from_logprobs,
    log_softmax32,
)


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def all_gather_cat(values: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Concatenate a 1-D tensor across processes (lengths may differ). Returns ``(all, offset of this rank)``."""
    if not distributed():
        return values, 0
    world, rank = dist.get_world_size(), dist.get_rank()
    n = torch.tensor([values.numel()], device=values.device, dtype=torch.long)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    sizes = [int(s) for s in sizes]
    padded = torch.zeros(max(sizes), dtype=values.dtype, device=values.device)
    padded[: values.numel()] = values
    chunks = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(chunks, padded)
    return torch.cat([c[:s] for c, s in zip(chunks, sizes, strict=True)]), sum(sizes[:rank])


def global_eksft_loss(
    logits, labels, ref_logits, *, rho, lambda_entropy, lambda_kl, selection, normalization, variant="paper",
    ignore_index=-100, num_items_in_batch=None, position_ids=None,
) -> LossResult:  # fmt: skip
    kw = dict(rho=rho, lambda_entropy=lambda_entropy, lambda_kl=lambda_kl, selection=selection,
              normalization=normalization, variant=variant, ignore_index=ignore_index)  # fmt: skip
    if not distributed():
        return eksft_loss(logits, labels, ref_logits, scope="micro_batch", num_items_in_batch=num_items_in_batch,
                          position_ids=position_ids, **kw)  # fmt: skip
    if variant != "paper":
        raise ValueError("scope='global' supports variant='paper' only.")
    check_inputs(logits, labels, ignore_index, ref_logits)
    t = gather_targets(logits, labels, ignore_index, position_ids)
    logz = log_softmax32(t.rows)  # (N, V) fp32, with gradient
    ref_logz = log_softmax32(ref_logits[:, :-1][t.valid[:, 1:]]).detach()
    h, kl = entropy_from_logprobs(logz), kl_from_logprobs(logz, ref_logz)
    logp = logz.gather(-1, t.tokens[:, None]).squeeze(-1)
    all_logp, offset = all_gather_cat(logp.detach())
    all_h, _ = all_gather_cat(h.detach())
    all_kl, _ = all_gather_cat(kl.detach())
    if all_logp.numel() == 0:
        return empty_result(logits, labels)
    plan = plan_eksft(
        all_logp, all_h, all_kl, torch.zeros_like(all_logp, dtype=torch.long), rho=rho, lambda_entropy=lambda_entropy,
        lambda_kl=lambda_kl, selection=selection, scope="micro_batch", normalization=normalization, variant="paper",
        num_items_in_batch=num_items_in_batch,
    )  # fmt: skip
    mine = slice(offset, offset + t.n)
    loss = (plan.ce_weight[mine] * -logp).sum() - (plan.entropy_weight[mine] * h).sum() + (plan.kl_weight[mine] * kl).sum()
    if normalization == "mean":
        # The weights divide by set sizes over all processes, so the objective is the *sum* of the per-process
        # losses; DDP averages gradients, hence the world-size factor. ("tokens": the trainer applies it, like TRL.)
        loss = loss * dist.get_world_size()
    plan.metrics["loss"] = float(loss.detach())
    return LossResult(loss=loss, metrics=plan.metrics, mask=t.scatter(plan.mask[mine]))
