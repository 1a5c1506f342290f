"""``EKSFTTrainer``: TRL's ``SFTTrainer`` with the loss of ``eksft.losses`` (config ``loss_type``).

A training step, top to bottom (one policy forward per micro-batch):

1. ``get_batch_samples``: for PSFT, old-policy log-probs are attached when a data batch is drawn (psft.py).
2. ``compute_loss``, logits path: policy forward -> full logits (with graph); the reference's logits (reference.py)
   when the loss needs them; ``loss_seam.compute`` calls the loss function, which takes its statistics from the
   detached logits of this same forward.
   Fused path (``loss_implementation`` fused, or auto where it applies; ``loss_seam.implementation``): the
   reference's backbone gives final hidden states (no logits); the policy is called with ``eksft_head_loss=`` a
   closure, so inside its own forward (fused_forward.py) the backbone's hidden states and the gathered lm head go
   to ``loss_seam.compute_fused`` (``eksft.losses.fused.fused_head_loss``, same options). No ``(B, T, V)`` logits.
3. Normalisation: the loss function divides by ``tokens.denominator``; ``_scale`` multiplies by
   ``tokens.step_scale`` (accumulation steps and process count), so ``loss_is_scaled_for_ga`` is always True.
4. Metrics: ``LossResult.metrics`` accumulate (metrics.py) and go out with every ``log``.
5. Masks: where the loss returns one (``LossResult.mask``), mask_tracker.py counts per token id what it kept out of
   cross-entropy, logs ``persistently_masked_fraction``, warns once when targets stay masked step after step, and
   writes ``OUTPUT_DIR/mask_targets.json`` at the end.

Divergence: :class:`TrainingDiverged` (never a match on an error's text) when the logits fed to the loss (the loss's
own input check, ``NonFiniteError``), the hidden states fed to the fused head, the loss, or the gradient norm
(checked before ``optimizer.step``) is NaN/inf; so the step that would write NaN into the weights never runs. A
checkpoint (and the final model) is written only when every weight is finite, and the message names the newest
checkpoint whose saved weights were read back finite (output_dir.py). The trainer holds no loss maths.

Resume: ``resume_from_checkpoint`` may be ``latest``/``true`` (newest *complete* checkpoint, output_dir.py). Each
checkpoint also stores the unlogged part of the current logging interval (``eksft_interval.json``: the summed loss and
metric sums since the last log), so the first line logged after a resume covers the same steps as without the stop.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import os

import torch
from accelerate.utils import is_peft_model
from datasets import Dataset
from transformers import TrainerCallback
from transformers.modeling_outputs import CausalLMOutput
from trl import SFTTrainer

from eksft.compat import require
from eksft.jobs.metrics import MetricAccumulator, MetricsJsonlCallback
from eksft.jobs.output_dir import last_finite_checkpoint, resolve_resume
from eksft.losses.tokens import NonFiniteError, step_scale

from . import loss_seam
from .config import EKSFTConfig
from .fused_forward import add_hidden_forward, gathered
from .mask_tracker import METRIC as PERSISTENT_METRIC
from .mask_tracker import MaskTracker
from .psft import OLD_LOGPS, OldPolicyQueue
from .reference import load_reference, reference_hidden, reference_logits
from .sed import resolve_tau

logger = logging.getLogger(__name__)


INTERVAL_FILE = "eksft_interval.json"


class TrainingDiverged(RuntimeError):
    """A quantity of the optimiser step went NaN/inf; raised before that step changes the weights. ``step`` (the
    optimiser step that was stopped), ``quantity`` (what went non-finite) and ``checkpoint`` (the newest checkpoint
    with finite weights, or None) are attributes; the message names them and the fix. ``eksft train`` exits 1."""

    exit_code = 1

    def __init__(self, message: str, *, step: int, quantity: str, checkpoint: str | None):
        super().__init__(message)
        self.step, self.quantity, self.checkpoint = step, quantity, checkpoint


def _finite(t) -> bool:
    if t is None:
        return True
    t = t.to_local() if hasattr(t, "to_local") else t  # a DTensor shard (FSDP2): the caller reduces over processes
    return bool(torch.isfinite(t.detach()).all())


@contextlib.contextmanager
def _trl_loss_type(args):
    """SFTTrainer.__init__ only accepts its own loss types ('nll'/'dft'); our compute_loss replaces its loss
    entirely, so show it 'nll' during construction and restore ours (EKSFTConfig docstring)."""
    ours = args.loss_type
    args.loss_type = "nll"
    try:
        yield
    finally:
        args.loss_type = ours


class EKSFTTrainer(SFTTrainer):
    _tag_names = ["trl", "sft", "eksft"]

    def __init__(
        self, model, args: EKSFTConfig | None = None, *, sed_calibration_dataset: Dataset | None = None, **kwargs
    ):
        if args is None or not isinstance(args, EKSFTConfig):
            raise ValueError("EKSFTTrainer needs an EKSFTConfig as `args` (it carries loss_type and the loss options).")
        loss_seam.validate(args)
        require("transformers.", "trl.trainer.sft")  # the private methods overridden below still exist
        # The default reference of an in-memory policy is a copy of its starting weights. Take it before
        # SFTTrainer.__init__: TRL patches `model.forward` with a closure over the policy (fused lm head), and a
        # later deep copy would keep calling the policy's forward.
        start_copy = None
        if (
            loss_seam.needs_reference(args)
            and not isinstance(model, str)
            and not args.ref_model
            and kwargs.get("peft_config") is None
            and not is_peft_model(model)
        ):
            start_copy = copy.deepcopy(model)
        with _trl_loss_type(args):
            super().__init__(model, args=args, **kwargs)
        self.loss_is_scaled_for_ga = True  # compute_loss scales for accumulation itself (step 3 above)
        self.loss_implementation = self._resolve_implementation(args)
        self._loss_metrics = {"train": MetricAccumulator(), "eval": MetricAccumulator()}
        self._psft = OldPolicyQueue(args.psft_updates_per_batch) if args.loss_type == "psft" else None
        self._micro = (-1, 0)  # (global_step, micro-batch index in it): random_mask's per-step seed
        self.sed_tau = args.sed_tau
        self._sed_calibration_dataset = None
        if args.loss_type == "sed_sft" and sed_calibration_dataset is not None:
            self._sed_calibration_dataset = self._prepare_dataset(
                sed_calibration_dataset, self.processing_class, args, False, None, "sed_calibration"
            )
        self.ref_model = None
        if loss_seam.needs_reference(args):  # losses without a reference never load one
            self.ref_model = load_reference(
                self,
                model if isinstance(model, str) else None,
                args.ref_model,
                start_copy,
                hidden_forward=self.loss_implementation == "fused",
            )
        self.mask_tracker = (
            MaskTracker(args.mask_persistence_steps, args.mask_persistence_share)
            if args.mask_persistence_steps > 0
            else None
        )
        self.add_callback(MetricsJsonlCallback(args.output_dir))
        self.add_callback(_RestoreInterval(self))
        self.add_callback(_TrackMasks(self))
        self._resumed_from = None

    def _resolve_implementation(self, args) -> str:
        """'fused' or 'logits' (``loss_seam.implementation``, decided once here); patches the forward for fused."""
        impl, reason = loss_seam.implementation(args, self.model)
        if impl == "fused":
            add_hidden_forward(self.model.get_base_model() if is_peft_model(self.model) else self.model)
        elif args.loss_implementation == "auto":
            logger.info("loss_implementation=auto: using the logits path (%s).", reason)
        return impl

    # ------------------------------------------------------------------------------------------------------ data
    def _prepare_dataset(self, dataset, processing_class, args, packing, formatting_func, dataset_name):
        if not isinstance(dataset, Dataset) or "input_ids" in dataset.column_names:
            return super()._prepare_dataset(dataset, processing_class, args, packing, formatting_func, dataset_name)
        before = len(dataset)
        # A whitespace-only completion teaches nothing but an end of turn: dropped like an empty one (files read by
        # eksft.data.formats refuse such records; this covers datasets passed in Python).
        dataset = dataset.filter(_has_completion)
        empty = before - len(dataset)
        out = (  # TRL's preparation of an empty dataset ends in a StopIteration: none is prepared
            super()._prepare_dataset(dataset, processing_class, args, packing, formatting_func, dataset_name)
            if len(dataset)
            else dataset
        )
        truncated = len(dataset) - len(out) if not packing else 0
        if len(out) == 0:
            raise ValueError(
                self._nothing_left(
                    dataset, processing_class, args, packing, formatting_func, dataset_name, before, empty
                )
            )
        # TRL drops records left with no response token by truncation, silently; count them in ONE warning.
        if empty or truncated:
            parts = (
                [
                    f"{truncated} have no response token left after truncation to max_length={args.max_length} "
                    "(raise max_length or shorten the prompts to keep them)"
                ]
                if truncated
                else []
            ) + ([f"{empty} have an empty or whitespace-only completion"] if empty else [])
            logger.warning(
                "%d of %d %s records were dropped: %s.", empty + truncated, before, dataset_name, "; ".join(parts)
            )
        return out

    def _nothing_left(self, dataset, processing_class, args, packing, formatting_func, name, before, empty) -> str:
        """The error when every record was dropped: why, with the prompt lengths in tokens and the fix."""
        if len(dataset) == 0:
            return (
                f"all {before} {name} records have an empty or whitespace-only completion: there is nothing "
                "to train on; check the completion column (completion_column / the last assistant turn)."
            )
        sample = dataset.select(range(min(len(dataset), 2000)))
        max_length = args.max_length
        try:  # the same tokenisation without truncation: a prompt's length is its run of leading masked labels
            args.max_length = None
            full = super()._prepare_dataset(sample, processing_class, args, packing, formatting_func, f"{name}-probe")
        finally:
            args.max_length = max_length
        lengths = [next((i for i, t in enumerate(r["labels"]) if t != -100), len(r["labels"])) for r in full]
        of = f" (of the first {len(sample)})" if len(sample) < len(dataset) else ""
        return (
            f"all {before} {name} records were dropped: after truncation to max_length={max_length} none has "
            f"a response token left. Prompts{of} are {min(lengths)} to {max(lengths)} tokens long (the longest: "
            f"{max(lengths)}); set max_length above {max(lengths)} (at least above {min(lengths)}) or shorten "
            "the prompts."
        )

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        if self._psft is None:
            return super().get_batch_samples(epoch_iterator, num_batches, device)
        return self._psft.get_batch_samples(self, super().get_batch_samples, epoch_iterator, num_batches, device)

    # ------------------------------------------------------------------------------------------------------ train
    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        """``resume_from_checkpoint``: a checkpoint folder, or ``latest``/``True`` for the newest complete one of
        output_dir; an incomplete or missing folder is an error naming a complete one (output_dir.py)."""
        resume_from_checkpoint = resolve_resume(resume_from_checkpoint, self.args.output_dir)
        self._resumed_from = resume_from_checkpoint
        if self.args.loss_type == "sed_sft":
            resuming = bool(resume_from_checkpoint)
            self.sed_tau = resolve_tau(self, self._sed_calibration_dataset, resuming)
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        training = model.training
        labels = inputs["labels"]
        old_logps = inputs.get(OLD_LOGPS)
        fwd = {k: v for k, v in inputs.items() if k not in ("labels", OLD_LOGPS)}
        fwd["use_cache"] = False
        # PSFT's clipped ratio has no meaning without an old policy: evaluation reports the SFT NLL.
        loss_type = "sft" if (self.args.loss_type == "psft" and old_logps is None) else None
        kw = dict(
            tau=self.sed_tau,
            num_items_in_batch=num_items_in_batch if training else None,
            position_ids=inputs.get("position_ids"),
            seed=self._random_mask_seed() if training else self.args.seed,
        )
        try:
            if self.loss_implementation == "fused":
                outputs, result = self._fused_forward(model, fwd, labels, training=training, **kw)
            else:
                outputs = model(**fwd)  # the one policy forward: logits (B, T, V) with graph
                ref_logits = reference_logits(self, model, fwd) if loss_seam.needs_reference(self.args) else None
                # NaN/inf in either logits: the loss's own input check raises NonFiniteError (caught below)
                result = loss_seam.compute(
                    self.args,
                    outputs.logits,
                    labels,
                    ref_logits=ref_logits,
                    old_logps=old_logps,
                    loss_type=loss_type,
                    **kw,
                )
        except NonFiniteError as e:  # the loss's own checks (logits, fused statistics, PSFT's old log-probs, ...)
            if not training:
                raise
            self._diverged(e.quantity, None)
        loss = result.loss
        if training:
            self._check_finite("loss", loss)
            loss = self._scale(loss, num_items_in_batch)
        self._loss_metrics["train" if training else "eval"].add(result.metrics)
        if training and self.mask_tracker is not None and result.mask is not None and result.target_logp is not None:
            self.mask_tracker.add(labels, result.mask, result.target_logp)
        return (loss, outputs) if return_outputs else loss

    def _fused_forward(self, model, fwd, labels, training=True, **kw):
        """Reference hidden states first (no grad), then the one policy forward, which ends in the loss."""
        ref_hidden = ref_head = None
        if loss_seam.needs_reference(self.args):
            ref_hidden, ref_head = reference_hidden(self, model, fwd)
        # The loss runs inside the policy's forward (a closure, its result passed back in `box`) rather than after
        # it on returned hidden states: under DeepSpeed ZeRO-3 and FSDP the lm head's full weight exists only while
        # the model's forward runs (fused_forward.gathered), and the loss must come out of that forward for
        # DDP/FSDP's backward hooks and accelerate's autocast wrapper to see it.
        box = {}

        def head_loss(hidden, head):  # runs inside the policy's forward, lm head gathered (fused_forward.py)
            if training:
                self._check_finite("final hidden states", hidden)
                self._check_finite("reference hidden states", ref_hidden)
            with gathered(ref_head) as ref:
                box["result"] = loss_seam.compute_fused(
                    self.args, hidden, head, labels, ref_hidden=ref_hidden, ref_head=ref, **kw
                )
            return CausalLMOutput(loss=box["result"].loss)

        outputs = model(**fwd, eksft_head_loss=head_loss)
        result = box["result"]
        result.loss = outputs.loss  # the tensor that came out through the wrappers (DDP, autocast)
        return outputs, result

    def _scale(self, loss, num_items_in_batch):
        """This micro-batch's share of the optimiser step's loss: the whole rule is ``tokens.step_scale``."""
        a = self.args
        return loss * step_scale(
            a.normalization,
            num_items_in_batch,
            accumulation_steps=self.current_gradient_accumulation_steps,
            processes=self.accelerator.num_processes // self.get_tp_size(),
            counts_span_processes=a.average_tokens_across_devices,
            sets_span_processes=a.loss_type == "eksft" and a.scope == "global",
        )

    def _random_mask_seed(self) -> int:
        step, i = self._micro
        self._micro = (self.state.global_step, i + 1 if step == self.state.global_step else 0)
        return self.args.seed * 1_000_003 + self.state.global_step * 1_009 + self._micro[1]

    # ------------------------------------------------------------------------------------------------ divergence
    def _check_finite(self, quantity: str, value) -> None:
        if not _finite(value):
            self._diverged(quantity, value)

    def _get_grad_norm(self, model, grad_norm=None):
        """transformers computes the (pre-clip) gradient norm here, after backward and before ``optimizer.step``:
        a NaN/inf norm stops training before that step writes it into the weights."""
        grad_norm = super()._get_grad_norm(model, grad_norm=grad_norm)
        norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm  # same on every process
        if norm is not None and not math.isfinite(float(norm)):
            self._diverged("gradient norm", grad_norm)
        return grad_norm

    def weights_finite(self) -> bool:
        """Whether every trainable weight is finite (on every process)."""
        ok = all(_finite(p) for p in self.model.parameters() if p.requires_grad)
        if self.accelerator.num_processes > 1:
            import torch.distributed as dist

            flag = torch.tensor([1.0 if ok else 0.0], device=self.args.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
            ok = bool(flag.item() > 0)
        return ok

    def check_weights_finite(self) -> None:
        """Raise :class:`TrainingDiverged` rather than save non-finite weights (checkpoints and the final model)."""
        if not self.weights_finite():
            self._diverged("weights", None, after_step=True)

    def _diverged(self, quantity: str, value, after_step: bool = False):
        step = self.state.global_step + (0 if after_step else 1)
        shown = (
            "NaN/inf"
            if value is None or isinstance(value, torch.Tensor) and value.numel() > 1
            else f"{float(value.detach() if isinstance(value, torch.Tensor) else value)}"
        )
        last = last_finite_checkpoint(self.args.output_dir)
        when = (
            f"after optimiser step {step}: non-finite {quantity} ({shown}), so they were not saved"
            if after_step
            else f"at optimiser step {step}: non-finite {quantity} ({shown}); training stopped before that step "
            "could change the weights"
        )
        a = self.args
        fix = (
            f"lower learning_rate (now {a.learning_rate:g})"
            + (f" or clip gradients with max_grad_norm (now {a.max_grad_norm:g})" if not a.max_grad_norm else "")
            + ", or check the data of that step"
        )
        if last:
            where = (
                f"Last checkpoint with finite weights (checked): {last}. Fix: {fix}; then retrain with "
                f"--overwrite_output_dir true, or continue from those weights with --model_name_or_path {last} "
                "and a new output_dir (--resume_from_checkpoint would restore the saved optimiser and "
                "learning-rate schedule, so it would not lower the learning rate)."
            )
        else:
            where = (
                f"No checkpoint with finite weights in {a.output_dir}. Fix: {fix}; then retrain with "
                "--overwrite_output_dir true."
            )
        raise TrainingDiverged(f"training diverged {when}. {where}", step=step, quantity=quantity, checkpoint=last)

    # ------------------------------------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self, model, trial):
        """Refuse non-finite weights; store the unlogged part of the logging interval (restored on resume), then
        transformers' checkpoint, whose trainer_state.json is written last (a checkpoint is complete with it)."""
        self.check_weights_finite()
        interval = self._interval_state()
        if self.args.should_save:
            folder = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, INTERVAL_FILE), "w", encoding="utf-8") as f:
                json.dump(interval, f)
        return super()._save_checkpoint(model, trial)

    def _interval_state(self) -> dict:
        """The loss and metric sums since the last log, summed over processes (process 0 restores them all)."""
        acc = self._loss_metrics["train"]
        keys = sorted(acc.sums)
        tr_loss = getattr(self, "_tr_loss", None)  # set by transformers' training loop
        values = [
            float(tr_loss) if tr_loss is not None else 0.0,
            *(acc.sums[k] for k in keys),
            acc.weight,
            float(acc.count),
        ]
        if self.accelerator.num_processes > 1:
            import torch.distributed as dist

            t = torch.tensor(values, dtype=torch.float64, device=self.args.device)
            dist.all_reduce(t)
            values = t.tolist()
        return {
            "global_step": self.state.global_step,
            "last_logged": getattr(self, "_globalstep_last_logged", self.state.global_step),
            "processes": self.accelerator.num_processes,
            "tr_loss": values[0],
            "sums": dict(zip(keys, values[1:-2])),
            "weight": values[-2],
            "count": int(values[-1]),
        }

    # ------------------------------------------------------------------------------------------------------ logs
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if self.model.training else "eval"
        summary = self._loss_metrics[mode].summary()
        self._loss_metrics[mode].clear()
        if mode == "eval":
            summary = {f"eval_{k}": v for k, v in summary.items()}
        elif summary and self.args.loss_type == "sed_sft":
            summary["sed_tau"] = self.sed_tau
        if mode == "train" and summary and self.mask_tracker is not None and self.mask_tracker.steps_tracked:
            summary[PERSISTENT_METRIC] = self.mask_tracker.persistent_share
        for k, v in summary.items():
            logs.setdefault(k, v)  # never overwrite transformers' loss / eval_loss
        super().log(logs, start_time)


def _has_completion(record: dict) -> bool:
    return not _empty_completion(record)


def _empty_completion(record: dict) -> bool:
    """A completion (or the last assistant turn of ``messages``) that is empty or only whitespace."""
    value = record.get("completion", record.get("messages"))
    if isinstance(value, list):
        value = value[-1].get("content") if value and isinstance(value[-1], dict) else value
    return isinstance(value, str) and not value.strip()


class _RestoreInterval(TrainerCallback):
    """On resume, put the checkpoint's unlogged interval (``INTERVAL_FILE``) back into the trainer, so the first log
    after the resume covers the same steps as an uninterrupted run. Process 0 takes the sums of all processes."""

    def __init__(self, trainer: EKSFTTrainer):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        t = self.trainer
        path = os.path.join(t._resumed_from, INTERVAL_FILE) if t._resumed_from else None
        if not path or not os.path.isfile(path):
            return
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        if saved.get("global_step") != state.global_step:
            return
        t._globalstep_last_logged = saved["last_logged"]
        if not state.is_world_process_zero:
            return
        t._tr_loss += saved["tr_loss"]
        acc = t._loss_metrics["train"]
        for k, v in saved["sums"].items():
            acc.sums[k] += v
        acc.weight += saved["weight"]
        acc.count += saved["count"]


class _TrackMasks(TrainerCallback):
    """Folds each optimiser step's masks into the trainer's :class:`MaskTracker` (before that step is logged) and
    writes ``OUTPUT_DIR/mask_targets.json`` when training ends (mask_tracker.py)."""

    def __init__(self, trainer: EKSFTTrainer):
        self.trainer = trainer

    def _decode(self):
        tok = self.trainer.processing_class
        return getattr(tok, "tokenizer", tok).decode

    def on_step_end(self, args, state, control, **kwargs):
        tracker = self.trainer.mask_tracker
        if tracker is not None and tracker.active:  # a loss that returns masks has run
            tracker.end_step(state.global_step, self._decode())

    def on_train_end(self, args, state, control, **kwargs):
        tracker = self.trainer.mask_tracker
        if tracker is not None and tracker.steps_tracked and state.is_world_process_zero:
            tracker.write(args.output_dir, self._decode())
