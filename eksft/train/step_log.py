"""What each micro-batch's loss leaves for the logs: its metrics, summed over a logging interval
(:class:`MetricAccumulator`), and the targets its mask kept out of cross-entropy (:class:`MaskTracker`).

**Metrics.** Every ``LossResult.metrics`` value is a mean over its micro-batch's ``num_targets`` valid targets, so the
interval's value is the ``num_targets``-weighted mean over its micro-batches (and over processes): averaging
micro-batch means with equal weights would over-weight short batches (a known trap of custom losses).
``num_targets`` itself is summed. The loss functions' own ``loss`` metric is dropped: transformers' ``loss`` (the
optimised objective, as scaled for the step) is the one logged.

**Masks.** Targets EKSFT keeps out of cross-entropy step after step: counts, the warning, ``mask_targets.json``.

A target taken out of cross-entropy at every step never gets its likelihood raised; under EKSFT its KL penalty pulls
it back towards the reference (docs/losses.md, "Targets that are never learned"). The unit is the **token id**:
records are seen once per epoch, so a (record, position) pair cannot show a run of steps, while a token id that
recurs in every batch (the opening words of a fixed answer format, "The" of "The answer is") can. Per token id,
over every valid target of every optimiser step (all micro-batches and processes):

- ``occurrences`` / ``masked``: how often it was a target and how often the loss's mask held it;
- ``steps_seen`` / ``steps_all_masked``: steps in which it occurred, and those in which every occurrence was masked;
- ``streak``: the current run of such steps (a step without the token neither extends nor breaks it);
- ``final_prob``: its mean probability under the policy at its occurrences in the last step it occurred (the
  loss's ``target_logp``, computed before that step's update).

After each step, the **persistently masked share** is the share of that step's targets whose token id has a streak
of at least ``mask_persistence_steps``; it is logged as ``persistently_masked_fraction`` and, the first time it
reaches ``mask_persistence_share``, a warning names the tokens and the fixes. Only the loss's mask is read here (no
loss maths); losses that return no mask are not tracked. The counts start at zero when a run resumes.
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict

import torch
import torch.distributed as dist

from eksft.analysis.masks import TARGETS_FILE
from eksft.losses.targets import valid_label_mask

logger = logging.getLogger(__name__)

METRIC = "persistently_masked_fraction"
SUMMED = ("num_targets",)
DROPPED = ("loss",)


class MetricAccumulator:
    def __init__(self):
        self.sums: dict[str, float] = defaultdict(float)
        self.weight = 0.0
        self.count = 0

    def add(self, metrics: dict[str, float]) -> None:
        w = float(metrics.get("num_targets", 1.0))
        for k, v in metrics.items():
            if k in DROPPED:
                continue
            self.sums[k] += float(v) if k in SUMMED else w * float(v)
        self.weight += w
        self.count += 1

    def summary(self) -> dict[str, float]:
        """Weighted means over the interval, reduced over processes when a process group exists."""
        if not self.count:
            return {}
        keys = sorted(self.sums)
        values = [self.sums[k] for k in keys] + [self.weight]
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            t = torch.tensor(values, dtype=torch.float64, device=_device())
            dist.all_reduce(t)
            values = t.tolist()
        weight = values[-1]
        return {k: (v if k in SUMMED else (v / weight if weight > 0 else 0.0)) for k, v in zip(keys, values[:-1])}

    def clear(self) -> None:
        self.sums.clear()
        self.weight = 0.0
        self.count = 0


def _device():
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


class MaskTracker:
    """Per-token-id counts over training (module docstring). ``add`` per micro-batch, ``end_step`` per step."""

    def __init__(self, steps: int, share: float, ignore_index: int = -100):
        self.steps, self.share, self.ignore_index = steps, share, ignore_index
        self.vocab = 0
        self.total = {k: torch.zeros(0, dtype=torch.float64) for k in self.TOTALS}
        self.step = {k: torch.zeros(0, dtype=torch.float64) for k in self.STEP}
        self.persistent_share = 0.0
        self.warned_at: int | None = None
        self.steps_tracked = 0
        self.active = False  # a loss that returns masks has run (on every process alike: end_step reduces)

    TOTALS = ("occurrences", "masked", "steps_seen", "steps_all_masked", "streak", "final_prob")
    STEP = ("occurrences", "masked", "prob_sum")

    def _grow(self, size: int) -> None:
        if size <= self.vocab:
            return
        for d in (self.total, self.step):
            for k, v in d.items():
                d[k] = torch.cat([v, torch.zeros(size - v.numel(), dtype=torch.float64)])
        self.vocab = size

    def add(self, labels: torch.Tensor, mask: torch.Tensor, target_logp: torch.Tensor | None) -> None:
        """One micro-batch: ``labels`` ``(B, T)``, the loss's ``mask`` (True = out of CE) and ``target_logp``."""
        self.active = True
        valid = valid_label_mask(labels, self.ignore_index)  # the losses' valid targets
        tokens = labels[valid].long().cpu()
        if tokens.numel() == 0:
            return
        self._grow(int(tokens.max()) + 1)
        ones = torch.ones(tokens.numel(), dtype=torch.float64)
        self.step["occurrences"].index_add_(0, tokens, ones)
        self.step["masked"].index_add_(0, tokens, mask[valid].cpu().double())
        if target_logp is not None:
            self.step["prob_sum"].index_add_(0, tokens, target_logp[valid].detach().cpu().double().exp())

    def end_step(self, global_step: int, decode=None) -> float:
        """Fold the step's counts in (summed over processes), update the share, warn once; returns the share."""
        size = torch.tensor([float(self.vocab)])
        if _distributed():
            size = _all_reduce(size, dist.ReduceOp.MAX)
            self._grow(int(size.item()))
            stacked = _all_reduce(torch.stack([self.step[k] for k in self.STEP]))
            for i, k in enumerate(self.STEP):
                self.step[k] = stacked[i]
        occ, masked = self.step["occurrences"], self.step["masked"]
        seen = occ > 0
        all_masked = seen & (masked == occ)
        t = self.total
        t["occurrences"] += occ
        t["masked"] += masked
        t["steps_seen"] += seen.double()
        t["steps_all_masked"] += all_masked.double()
        t["streak"][all_masked] += 1
        t["streak"][seen & ~all_masked] = 0
        t["final_prob"][seen] = self.step["prob_sum"][seen] / occ[seen]
        n = float(occ.sum())
        persistent = t["streak"] >= self.steps
        self.persistent_share = float(occ[persistent].sum()) / n if n else 0.0
        self.steps_tracked += 1
        for v in self.step.values():
            v.zero_()
        if self.warned_at is None and self.persistent_share >= self.share and self.share > 0 and n:
            self.warned_at = global_step
            logger.warning(self.warning(global_step, decode))
        return self.persistent_share

    def warning(self, global_step: int, decode=None) -> str:
        top = ", ".join(
            f"{r['text']!r} (p={r['final_prob']:.2f})" for r in self.rows(decode, limit=8) if r["streak"] >= self.steps
        )
        return (
            f"persistent mask at step {global_step}: {self.persistent_share:.0%} of this step's targets are tokens "
            f"the loss masked at every occurrence for the last {self.steps}+ steps they occurred in ({top}); these "
            "targets can never be learned by cross-entropy under this mask. Lower rho or lambda_kl, warm up with "
            "loss_type: sft, or train on data the model already imitates (docs/losses.md, 'Targets that are never "
            "learned'); EKSFTConfig.mask_persistence_share / mask_persistence_steps set this warning."
        )

    def rows(self, decode=None, limit: int | None = None) -> list[dict]:
        """Token ids that were ever masked, most-masked first (share of occurrences, then occurrences)."""
        t = self.total
        ids = torch.nonzero(t["masked"] > 0).flatten().tolist()
        out = [
            {
                "token_id": i,
                "text": decode([i]) if decode else str(i),
                "masked_share": float(t["masked"][i] / t["occurrences"][i]),
                "occurrences": int(t["occurrences"][i]),
                "masked": int(t["masked"][i]),
                "steps_seen": int(t["steps_seen"][i]),
                "steps_all_masked": int(t["steps_all_masked"][i]),
                "streak": int(t["streak"][i]),
                "final_prob": float(t["final_prob"][i]),
            }
            for i in ids
        ]
        out.sort(key=lambda r: (-r["masked_share"], -r["occurrences"], r["token_id"]))
        return out[:limit] if limit else out

    def report(self, decode=None) -> dict:
        return {
            "unit": "token id",
            "steps": self.steps_tracked,
            "mask_persistence_steps": self.steps,
            "mask_persistence_share": self.share,
            "persistently_masked_fraction": self.persistent_share,
            "warned_at_step": self.warned_at,
            "targets": int(self.total["occurrences"].sum()),
            "masked": int(self.total["masked"].sum()),
            "tokens": self.rows(decode),
        }

    def write(self, output_dir: str, decode=None) -> str:
        path = os.path.join(output_dir, TARGETS_FILE)
        os.makedirs(output_dir, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.report(decode), f, indent=1)
            f.write("\n")
        return path


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_reduce(t: torch.Tensor, op=None) -> torch.Tensor:
    t = t.to(_device())
    dist.all_reduce(t, op=op or dist.ReduceOp.SUM)
    return t.cpu()
