"""``DAPOTrainer``: TRL's ``GRPOTrainer`` plus DAPO's dynamic sampling (docs/rl.md, "Dynamic sampling").

Only the generation/scoring step is overridden. With ``dynamic_sampling`` on, a training rollout batch is scored by
TRL's own ``_generate_and_score_completions`` (HF generate or vLLM, whichever the config picks: the filter sits
above both); groups whose completions all got the same reward are dropped, and more prompts are drawn and scored the
same way until every process holds its share of ``prompts_per_generation`` groups with reward variance, or
``max_generation_batches`` batches were drawn (then a warning names the field and zero-variance groups fill the
batch, which is what training without the filter does). The kept rows are joined into one scored batch of the
configured shape, which TRL then shuffles, splits into micro-batches and trains on unchanged.

Refill prompts come from a shuffle of the training prompts seeded by ``(seed, optimiser step)`` that skips prompts
already drawn at that step (:func:`eksft.rl.dynamic_sampling.refill_indices`): the main dataloader and the number of
steps per epoch are untouched, every process draws the same prompts, and a resumed run draws the same refills.

Metrics, logged once per rollout batch through TRL's own metric dict (so they reach ``report_to`` and
metrics.jsonl with the rest): ``dynamic_sampling/generation_batches``, ``…/groups_drawn``,
``…/groups_with_variance``, ``…/groups_kept`` and ``…/groups_filled`` (zero-variance groups used because the cap
was hit). TRL's rollout metrics (``reward``, ``frac_reward_zero_std``, ``completions/*``) average over every drawn
batch, i.e. describe what was sampled before the filter.
"""

from __future__ import annotations

import logging

import torch
from datasets import IterableDataset
from trl import GRPOTrainer

from eksft.compat import require

from .dynamic_sampling import (
    METRIC_PREFIX,
    choose_groups,
    group_rewards,
    groups_with_variance,
    join_batches,
    kept_per_process,
    needs_more,
    prompt_key,
    refill_indices,
)
from .vllm_cpu import cpu_vllm_generation

logger = logging.getLogger(__name__)


class DAPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` with DAPO's dynamic sampling (``args.dynamic_sampling``); identical to it when that is off."""

    def __init__(self, *args, **kwargs):
        require("trl.trainer.grpo")  # the private methods overridden below still exist
        config = kwargs.get("args", args[2] if len(args) > 2 else None)
        with cpu_vllm_generation(config):  # vLLM's CPU build only; on a GPU TRL's vLLM path is untouched
            super().__init__(*args, **kwargs)
        self._last_rewards_per_func: torch.Tensor | None = None
        cfg = self.args
        if not getattr(cfg, "dynamic_sampling", False):
            return
        if isinstance(self.train_dataset, IterableDataset) or not hasattr(self.train_dataset, "__getitem__"):
            raise ValueError(
                "RLConfig.dynamic_sampling draws refill prompts by index and needs a map-style dataset "
                "(a datasets.Dataset); set dynamic_sampling: false for a streaming dataset."
            )
        local = cfg.generation_batch_size // self.accelerator.num_processes
        if local % self.num_generations:
            raise ValueError(
                f"RLConfig.dynamic_sampling: each process must hold whole groups, but its share of the "
                f"rollout batch ({local} = generation_batch_size {cfg.generation_batch_size} / "
                f"{self.accelerator.num_processes} processes) is not a multiple of num_generations "
                f"({self.num_generations}). Change prompts_per_generation or num_generations, or set "
                "dynamic_sampling: false."
            )

    # TRL calls this once per scored batch with the rewards of every process; the filter reads them here.
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._last_rewards_per_func = rewards_per_func
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        if not (getattr(self.args, "dynamic_sampling", False) and self.model.training):
            return super()._generate_and_score_completions(inputs)
        return self._dynamic_sampling_batch(inputs)

    def _score_groups(self, rows: list[dict]) -> tuple[dict, list[bool]]:
        """TRL's scored batch of ``rows`` and one has-variance flag per group of every process."""
        batch = super()._generate_and_score_completions(rows)
        rewards = group_rewards(self._last_rewards_per_func, self.reward_weights, self.args.dynamic_sampling_metric)
        return batch, groups_with_variance(rewards, self.num_generations)

    def _dynamic_sampling_batch(self, inputs: list[dict]) -> dict:
        G, cfg = self.num_generations, self.args
        n_proc, rank = self.accelerator.num_processes, self.accelerator.process_index
        local_rows = len(inputs)
        per_process = local_rows // G
        step = self.state.global_step
        batches, flags = [], []
        batch, round_flags = self._score_groups(inputs)
        batches.append(batch), flags.append(round_flags)
        if needs_more(flags, per_process, n_proc) and cfg.max_generation_batches > 1:
            from accelerate.utils import gather_object

            seen = set(gather_object([prompt_key(x) for x in inputs]))
            columns = list(inputs[0])
            dataset = self.train_dataset
            draws = refill_indices(len(dataset), cfg.seed, step, seen, lambda i: prompt_key(dataset[i]))
            while needs_more(flags, per_process, n_proc) and len(batches) < cfg.max_generation_batches:
                prompts = [next(draws) for _ in range(per_process * n_proc)]  # the same on every process
                rows = [{k: v for k, v in dataset[i].items() if k in columns} for i in prompts for _ in range(G)]
                batch, round_flags = self._score_groups(rows[rank * local_rows : (rank + 1) * local_rows])
                batches.append(batch), flags.append(round_flags)
        kept = sum(kept_per_process(flags, per_process, n_proc))
        total = per_process * n_proc
        stats = {
            "generation_batches": len(batches),
            "groups_drawn": total * len(batches),
            "groups_with_variance": sum(map(sum, flags)),
            "groups_kept": kept,
            "groups_filled": total - kept,
        }
        for name, value in stats.items():
            self._metrics["train"][METRIC_PREFIX + name].append(float(value))
        self.last_dynamic_sampling = stats  # for tests and callbacks
        if kept < total and self.accelerator.is_main_process:
            logger.warning(
                f"dynamic sampling at step {step}: only {kept} of {total} groups have reward variance after "
                f"max_generation_batches={cfg.max_generation_batches} generation batches ({stats['groups_drawn']} "
                f"groups drawn); {total - kept} zero-variance groups fill the batch (no gradient signal, as without "
                "the filter). Raise RLConfig.max_generation_batches, use prompts the policy sometimes solves, or set "
                "dynamic_sampling: false."
            )
        # Every process computes every process's plan from the same flags: either all keep their first batch, or
        # all join (join_batches recounts num_items_in_batch with a gather, a collective every process must call).
        plans = [choose_groups(flags, per_process, p) for p in range(n_proc)]
        if all(plan == [(0, g) for g in range(per_process)] for plan in plans):
            return batches[0]  # every first batch was already full: exactly TRL's batch
        count = lambda n: self.accelerator.gather(n).sum()  # noqa: E731
        return join_batches(batches, plans[rank], G, self._tokenizer.pad_token_id, count)
