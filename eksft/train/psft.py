"""PSFT's old policy (Zhu et al. 2025; docs/losses.md): when a *data batch* is drawn, the policy's
log-probabilities of its labels are snapshotted, then ``psft_updates_per_batch`` optimiser steps (minibatch updates)
consume it, each on its own share. With one update per batch the snapshot equals the policy at the update, r = 1,
and the gradient is exactly SFT's.

One data batch = ``psft_updates_per_batch`` optimiser steps of micro-batches. ``Trainer.get_batch_samples`` fetches
one optimiser step at a time; :class:`OldPolicyQueue` fetches a whole data batch on the first call, attaches
``old_logps`` to every micro-batch, and hands the steps out in order.
"""

from __future__ import annotations

import torch

from eksft.losses import target_logprobs

OLD_LOGPS = "old_logps"


class OldPolicyQueue:
    def __init__(self, updates_per_batch: int):
        self.updates = updates_per_batch
        self.queue: list[dict] = []
        self.iterator = None

    def get_batch_samples(self, trainer, fetch, epoch_iterator, num_batches: int, device):
        """``fetch`` is ``Trainer.get_batch_samples``; returns ``(micro_batches, num_items_in_batch)`` like it."""
        if epoch_iterator is not self.iterator:  # a new epoch: never carry micro-batches across
            self.queue, self.iterator = [], epoch_iterator
        if not self.queue:
            drawn, _ = fetch(epoch_iterator, num_batches * self.updates, device)
            snapshot(trainer, drawn)
            self.queue = drawn
        step, self.queue = self.queue[:num_batches], self.queue[num_batches:]
        return step, trainer._get_num_items_in_batch(step, device)


@torch.no_grad()
def snapshot(trainer, micro_batches: list[dict]) -> None:
    """Attach ``old_logps`` (B, T) to each micro-batch: the current policy's label log-probs (eval mode)."""
    model = trainer.model
    was_training = model.training
    model.eval()
    try:
        for batch in micro_batches:
            inputs = trainer._prepare_inputs({k: v for k, v in batch.items() if k != "labels"})
            inputs["use_cache"] = False
            logits = model(**inputs).logits
            batch[OLD_LOGPS] = target_logprobs(logits, batch["labels"].to(logits.device))
    finally:
        model.train(was_training)
