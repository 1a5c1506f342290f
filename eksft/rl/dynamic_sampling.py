"""DAPO's dynamic sampling as pure functions (no trainer state), used by :class:`eksft.rl.trainer.DAPOTrainer`.

DAPO (Yu et al. 2025, section 3.3; verl ``algorithm.filter_groups``) drops every group whose completions all got the
same reward (all right or all wrong: zero advantage, no gradient) and samples more prompts until the rollout batch
holds ``prompts_per_generation`` groups with reward variance, or until ``max_generation_batches`` batches were drawn.

Layout (TRL's ``RepeatSampler``): a generation batch is ``P`` prompts × ``G`` completions, prompt-major; process ``p``
holds the contiguous rows ``[p * L, (p + 1) * L)`` with ``L = P * G / processes`` and the gathered rewards hold every
process's rows in that order. Each process holds whole groups (checked at start-up), so every process can fill its
own ``L / G`` groups from its own rows, and every process can compute every other's progress from the gathered
rewards: they agree on when to stop without another collective.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

#: The metrics DAPOTrainer logs once per rollout batch (docs/rl.md, "Dynamic sampling"): generation batches drawn,
#: groups drawn, groups with reward variance, groups kept, and zero-variance groups that filled the batch.
METRIC_PREFIX = "dynamic_sampling/"
GENERATION_BATCHES = METRIC_PREFIX + "generation_batches"
GROUPS_DRAWN = METRIC_PREFIX + "groups_drawn"
GROUPS_WITH_VARIANCE = METRIC_PREFIX + "groups_with_variance"
GROUPS_KEPT = METRIC_PREFIX + "groups_kept"
GROUPS_FILLED = METRIC_PREFIX + "groups_filled"

#: Per-row tensors of GRPOTrainer's scored batch and how they pad when batches of different widths are joined:
#: (side, value). Sequence-level importance ratios have width 1 in every batch, so padding never touches them.
PADDED_KEYS = {
    "prompt_ids": ("left", None),  # None: the tokenizer's pad id
    "prompt_mask": ("left", 0),
    "completion_ids": ("right", None),
    "completion_mask": ("right", 0),
    "old_per_token_logps": ("right", 0.0),
    "sampling_per_token_logps": ("right", 0.0),
    "ref_per_token_logps": ("right", 0.0),
    "importance_sampling_ratio": ("right", 1.0),
    "tool_mask": ("right", 1),
}
ROW_KEYS = {"advantages"}
BATCH_KEYS = {"num_items_in_batch"}  # recomputed from the joined masks


def group_rewards(rewards_per_func: torch.Tensor, weights: torch.Tensor, metric: str) -> torch.Tensor:
    """The per-completion value groups are filtered on: ``reward`` = the weighted sum GRPO's advantages come from
    (NaN where every reward function returned None), ``accuracy`` = the first reward function (DAPO / verl ``acc``)."""
    if metric == "accuracy":
        return rewards_per_func[:, 0]
    rewards = (rewards_per_func * weights.to(rewards_per_func.device).unsqueeze(0)).nansum(dim=1)
    rewards[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
    return rewards


def groups_with_variance(rewards: torch.Tensor, num_generations: int) -> list[bool]:
    """One flag per group of ``num_generations`` consecutive completions: do their (non-NaN) rewards differ?

    The test is TRL's own ``frac_reward_zero_std`` one (``isclose(std, 0)``); a group with fewer than two scorable
    completions has no variance.
    """
    grouped = rewards.detach().float().view(-1, num_generations)
    mean = torch.nanmean(grouped, dim=1, keepdim=True)
    count = (~torch.isnan(grouped)).sum(dim=1)
    var = torch.nanmean((grouped - mean) ** 2, dim=1) * count / (count - 1).clamp(min=1)
    std = torch.nan_to_num(var, nan=0.0).sqrt()
    return ((count > 1) & ~torch.isclose(std, torch.zeros_like(std))).tolist()


def kept_per_process(flags: Sequence[Sequence[bool]], groups_per_process: int, num_processes: int) -> list[int]:
    """How many groups with variance each process has drawn so far (all rounds), capped at its quota."""
    counts = [0] * num_processes
    for round_flags in flags:
        for g, ok in enumerate(round_flags):
            counts[g // groups_per_process] += bool(ok)
    return [min(c, groups_per_process) for c in counts]


def needs_more(flags: Sequence[Sequence[bool]], groups_per_process: int, num_processes: int) -> bool:
    """True while some process still lacks groups with variance (every process computes the same answer)."""
    return min(kept_per_process(flags, groups_per_process, num_processes)) < groups_per_process


def choose_groups(flags: Sequence[Sequence[bool]], groups_per_process: int, process: int) -> list[tuple[int, int]]:
    """``(round, local group)`` pairs that make up process ``process``'s batch of ``groups_per_process`` groups:
    its groups with variance in drawing order; when the cap left it short, its zero-variance groups (in drawing
    order) fill the rest, so every batch keeps its configured shape (they get zero advantage, as without the
    filter)."""
    first = process * groups_per_process
    mine = [(r, g) for r, round_flags in enumerate(flags) for g in range(groups_per_process)]
    good = [(r, g) for r, g in mine if flags[r][first + g]]
    bad = [(r, g) for r, g in mine if not flags[r][first + g]]
    return (good + bad)[:groups_per_process]


def prompt_key(row: dict) -> str:
    """A row's identity for "already drawn this step": its prompt, serialised."""
    return json.dumps(row.get("prompt"), sort_keys=True, default=str)


def refill_indices(num_rows: int, seed: int, step: int, seen: set[str], key_of: Callable[[int], str]) -> Iterator[int]:
    """Dataset indices for refill prompts at optimiser step ``step``: a shuffle seeded by ``(seed, step, pass)``,
    skipping prompts already drawn this step (``seen``, updated as indices are yielded).

    It depends only on the seed and the step, so every process draws the same prompts and a resumed run draws the
    same refills without saving any state. When a whole pass over the data yields nothing new (fewer distinct
    prompts than the step needs), prompts may repeat.
    """
    if num_rows < 1:
        return
    for pass_ in range(1 << 30):
        fresh = False
        for i in np.random.default_rng([seed, step, pass_]).permutation(num_rows).tolist():
            key = key_of(i)
            if key in seen:
                continue
            seen.add(key)
            fresh = True
            yield i
        if not fresh:
            seen.clear()


def _pad_to(t: torch.Tensor, width: int, side: str, value) -> torch.Tensor:
    extra = width - t.size(1)
    if extra <= 0:
        return t
    return F.pad(t, (extra, 0) if side == "left" else (0, extra), value=value)


def join_batches(
    batches: Sequence[dict],
    plan: Sequence[tuple[int, int]],
    num_generations: int,
    pad_token_id: int,
    count_items: Callable[[torch.Tensor], torch.Tensor],
) -> dict:
    """Rows of the planned groups, from the scored batches of each round, as one scored batch.

    Prompt tensors are left-padded and completion tensors right-padded to the widest batch (padding is masked, as
    TRL's own padding is); ``num_items_in_batch`` is recounted over the joined loss mask with ``count_items`` (a
    gather-and-sum over processes).
    """
    unknown = set(batches[0]) - set(PADDED_KEYS) - ROW_KEYS - BATCH_KEYS
    if unknown:
        raise NotImplementedError(
            f"RLConfig.dynamic_sampling: the scored batch has {sorted(unknown)} (images or other "
            "per-batch inputs), which the group filter cannot split; set dynamic_sampling: "
            "false."
        )
    rows: dict[int, list[int]] = {}
    for r, g in plan:
        rows.setdefault(r, []).extend(range(g * num_generations, (g + 1) * num_generations))
    order = sorted(rows)  # rounds in drawing order; within a round the planned groups in plan order
    index = {r: torch.tensor(rows[r], device=batches[r]["advantages"].device) for r in order}
    out = {}
    for key in batches[0]:
        if key in BATCH_KEYS:
            continue
        parts = [batches[r][key].index_select(0, index[r]) for r in order]
        if key in PADDED_KEYS:
            side, value = PADDED_KEYS[key]
            width = max(p.size(1) for p in parts)
            parts = [_pad_to(p, width, side, pad_token_id if value is None else value) for p in parts]
        out[key] = torch.cat(parts, dim=0)
    loss_mask = out["completion_mask"] if "tool_mask" not in out else out["completion_mask"] * out["tool_mask"]
    out["num_items_in_batch"] = count_items(loss_mask.sum())
    return out
