"""What every loss shares: the scored targets of a batch, their fp32 statistics, the one rule that turns token sums
into losses (:func:`denominator`, :func:`step_scale`), and the result type every loss returns (:class:`LossResult`).

Conventions (``docs/losses.md``): logits ``(B, T, V)`` and labels ``(B, T)`` are *unshifted*, as in Hugging Face
causal LMs; row ``t`` predicts token ``t + 1``, so target ``j`` (``labels[:, j] != ignore_index``, ``j >= 1``) is
scored by row ``j - 1``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

NORMALIZATIONS = ("mean", "tokens")


@dataclass
class LossResult:
    """What a loss function returns.

    Attributes:
        loss: scalar tensor, differentiable with respect to the policy logits (or hidden states on the fused path).
        metrics: plain Python floats, ready for any logger. Means are over the micro-batch; ``num_targets``
            says how many valid targets they were taken over, so callers can weight them when aggregating.
        mask: ``(B, T)`` bool aligned with ``labels``; True where the target was taken out of cross-entropy.
            ``None`` for methods that never mask.
        target_logp: ``(B, T)`` float32, detached, aligned with ``labels``: the policy's log-probability of each
            target (0 where no target is scored); set by the losses that return a mask (what was masked, and how
            well the policy predicts it: the trainer's persistent-mask listing). ``None`` otherwise.
    """

    loss: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)
    mask: torch.Tensor | None = None
    target_logp: torch.Tensor | None = None


# ---------------------------------------------------------------------------------------------------- valid targets
@dataclass
class Targets:
    """The valid targets of a batch, flattened. ``N`` = number of valid targets.

    ``valid`` is ``(B, T)`` bool over *label* positions (True at j when label j is scored); ``rows`` are the
    ``(N, V)`` logit rows that score them (row j-1), ``tokens`` the ``(N,)`` target ids, ``seq`` the ``(N,)``
    sequence index (batch row, or packed-sequence id when ``position_ids`` are given).
    """

    valid: torch.Tensor  # (B, T) bool
    rows: torch.Tensor  # (N, V), model dtype
    tokens: torch.Tensor  # (N,)
    seq: torch.Tensor  # (N,) int64

    @property
    def n(self) -> int:
        return int(self.tokens.numel())

    def scatter(self, values: torch.Tensor) -> torch.Tensor:
        """(N,) values -> (B, T) of their dtype aligned with labels, zero (False) where no target is scored."""
        out = torch.zeros(self.valid.shape, dtype=values.dtype, device=values.device)
        out[self.valid] = values
        return out


def valid_label_mask(labels: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """(B, T) bool: label positions j >= 1 whose label is scored (position 0 has no row predicting it)."""
    valid = labels != ignore_index
    valid[:, 0] = False
    return valid


def sequence_ids(labels: torch.Tensor, position_ids: torch.Tensor | None) -> torch.Tensor:
    """(B, T) int64 id of the sequence each position belongs to.

    Without ``position_ids`` each batch row is one sequence. With them (padding-free / packed batches), a new
    sequence starts wherever ``position_ids == 0``.
    """
    B, T = labels.shape
    if position_ids is None:
        return torch.arange(B, device=labels.device)[:, None].expand(B, T)
    if position_ids.shape != labels.shape:
        raise ValueError(f"`position_ids` has shape {tuple(position_ids.shape)}; expected {tuple(labels.shape)}.")
    starts = (position_ids == 0).long()
    starts[:, 0] = 1
    flat = starts.reshape(-1).cumsum(0) - 1  # rows never share a sequence: every row starts a new one
    return flat.reshape(B, T)


def gather_targets(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int, position_ids: torch.Tensor | None = None
) -> Targets:
    valid = valid_label_mask(labels, ignore_index)
    rows = logits[:, :-1][valid[:, 1:]]  # row j-1 scores label j
    return Targets(valid=valid, rows=rows, tokens=labels[valid].long(), seq=sequence_ids(labels, position_ids)[valid])


# ------------------------------------------------------------------------------------------------- token statistics
def upcast(x: torch.Tensor) -> torch.Tensor:
    """At least fp32: fp16/bf16 statistics are computed in fp32, fp64 stays fp64 (gradcheck)."""
    return x if x.dtype == torch.float64 else x.float()


def log_softmax32(rows: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(upcast(rows), dim=-1)


def pick(logz: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """``(N,)`` entries ``logz[i, tokens[i]]`` of ``(N, V)`` log-probabilities: each row's target log-probability."""
    return logz.gather(-1, tokens[:, None]).squeeze(-1)


def log_probs(rows: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 log-softmax of ``(N, V)`` logit rows and the ``(N,)`` log-probability of each row's target token."""
    logz = log_softmax32(rows)
    return logz, pick(logz, tokens)


def entropy_from_logprobs(logz: torch.Tensor) -> torch.Tensor:
    """H(p) = -sum_v p_v log p_v, per row (nats)."""
    return -(logz.exp() * logz).sum(-1)


def kl_from_logprobs(logz: torch.Tensor, ref_logz: torch.Tensor) -> torch.Tensor:
    """KL(p || q) = sum_v p_v (log p_v - log q_v), per row; gradient flows through p only (q is detached)."""
    return (logz.exp() * (logz - ref_logz.detach())).sum(-1)


def target_logprobs(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """(B, T) fp32 (fp64 for fp64 logits) log-probability of each label under ``logits`` (0 where the label is ignored).

    This is the layout PSFT's ``old_logps`` and IW-SFT's reference log-probs use.
    """
    t = gather_targets(logits, labels, ignore_index)
    logp = log_probs(t.rows, t.tokens)[1]
    out = torch.zeros(labels.shape, dtype=logp.dtype, device=logits.device)
    out[t.valid] = logp
    return out


# ----------------------------------------------------------------------------------------------------- normalising
ENTROPY_UNITS = ("normalized", "nats")


def entropy_scale(entropy_unit: str, vocab_size: int) -> float:
    """Per-nat factor of the entropy weight lambda_H: ``normalized`` (default) weights H / ln V, the unit of the
    authors' code, in which the published lambda_H = 0.05 was run; ``nats`` weights H itself (the paper's equations
    read literally: ln V times stronger at the same lambda_H). The effective per-nat weight is lambda_H * this."""
    if entropy_unit not in ENTROPY_UNITS:
        raise ValueError(f"`entropy_unit` must be one of {list(ENTROPY_UNITS)}, got {entropy_unit!r}.")
    if entropy_unit == "nats":
        return 1.0
    if not (isinstance(vocab_size, int) and vocab_size >= 2):
        raise ValueError(f"entropy_unit='normalized' needs the vocabulary size V >= 2, got {vocab_size!r}.")
    return 1.0 / math.log(vocab_size)


def denominator(count: int, normalization: str, num_items_in_batch, n_local: int) -> float:
    """The one place token sums become losses.

    ``mean``: divide each term by the number of tokens it sums over (paper Eq. 14-15, exact for one micro-batch).
    ``tokens``: divide every term by the valid-target count of the whole optimiser step across processes
    (``num_items_in_batch`` in transformers; the local count when not given), so splitting a step into
    micro-batches does not change the gradient.
    """
    if normalization == "mean":
        return float(max(count, 1))
    if num_items_in_batch is None:
        return float(max(n_local, 1))
    n = float(num_items_in_batch.item() if isinstance(num_items_in_batch, torch.Tensor) else num_items_in_batch)
    if n <= 0:
        raise ValueError(f"`num_items_in_batch` must be > 0, got {n}.")
    return n


def step_scale(
    normalization: str,
    num_items_in_batch,
    *,
    accumulation_steps: int,
    processes: int,
    counts_span_processes: bool,
    sets_span_processes: bool = False,
) -> float:
    """The second half of the rule (:func:`denominator` is the first): the factor a trainer multiplies one
    micro-batch's loss by, so that the gradient summed over ``accumulation_steps`` micro-batches and averaged over
    ``processes`` by data parallelism (DDP) is the gradient of the whole optimiser step's loss.

    * ``tokens`` with ``num_items_in_batch``: :func:`denominator` already divided every term by the step's target
      count, so the micro-batch losses *sum* to the step's loss: accumulation adds them (1), and when that count
      covers every process (``counts_span_processes``, transformers' ``average_tokens_across_devices``) DDP's
      average must be undone (x ``processes``).
    * otherwise (``mean``; ``tokens`` without a count): each micro-batch loss is a mean and the step's loss is the
      mean of them (/ ``accumulation_steps``); DDP's average over processes is the mean over them. Except when the
      sets of the terms span every process (``sets_span_processes``: EKSFT ``scope="global"`` with ``mean``): the
      denominators count every process's targets, so the per-process losses sum to the step's loss
      (x ``processes``).

    Tested by tests/train/test_trainer_loss.py (accumulation) and tests/train/test_multiprocess.py (two processes).
    """
    if normalization == "tokens" and num_items_in_batch is not None:
        return float(processes) if counts_span_processes else 1.0
    return (processes if sets_span_processes else 1) / accumulation_steps


def zero_loss(logits: torch.Tensor) -> torch.Tensor:
    """A zero that is still attached to the graph (zero gradient, never NaN)."""
    return logits.reshape(-1)[:1].sum() * 0.0


def mean_or_zero(x: torch.Tensor) -> float:
    return float(x.float().mean()) if x.numel() else 0.0
