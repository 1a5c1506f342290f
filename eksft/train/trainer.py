"""``EKSFTTrainer``: TRL's ``SFTTrainer`` with the loss of ``eksft.losses`` (config ``loss_type``).

A training step, top to bottom (one policy forward per micro-batch); every file it runs is named:

1. ``__init__``: ``self.loss = BoundLoss.from_config(args, model)`` (losses/spec.py) resolves the loss once: its
   function, its options (``rho``, ``lambda_entropy``, ... from the config, checked), and the path (fused head or full
   logits). For the fused path the policy's and the reference's ``forward`` are patched (models/head.py).
2. ``compute_loss`` (here), fused path: the reference's backbone gives final hidden states (no logits); the policy is
   called with the labels, the bound loss and the reference's states, and its patched forward (models/head.py) runs
   the backbone and ``BoundLoss.on_hidden`` -> ``fused_loss`` (losses/fused.py, chunked passes in
   losses/fused_passes.py): per-target log p, H and KL (losses/targets.py), ``plan_eksft`` picks the masked targets
   (losses/eksft.py, Top-K in losses/selection.py) and the gradient is formed. No ``(B, T, V)`` logits.
   Logits path: ``model(**inputs).logits`` and the reference's, then ``BoundLoss.on_logits`` (the loss function).
3. Normalisation: the loss divides by ``targets.denominator``; :meth:`_scale` multiplies by ``targets.step_scale``
   (accumulation steps and process count), so ``loss_is_scaled_for_ga`` is always True.
4. Logs (train/step_log.py): ``LossResult.metrics`` accumulate and go out with every ``log``; where the loss returns a
   mask, the mask tracker counts per token id what it kept out of cross-entropy, logs
   ``persistently_masked_fraction``, warns once when targets stay masked step after step, and writes
   ``OUTPUT_DIR/mask_targets.json`` at the end.

Divergence (divergence.py): ``TrainingDiverged`` when the logits or hidden states fed to the loss (the loss's own
``NonFiniteError``), the loss, or the gradient norm (checked before ``optimizer.step``) is NaN/inf, so the step that
would write NaN into the weights never runs; a checkpoint (and the final model) is written only when every weight is
finite. Resume: ``resume_from_checkpoint`` may be ``latest``/``true`` (eksft/jobs/output_dir.py); each checkpoint
stores the unlogged part of the logging interval (interval.py). Data: sft_data.py. The trainer holds no loss
maths.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os

import torch
from accelerate.utils import is_peft_model
from transformers import TrainerCallback
from trl import SFTTrainer

from eksft.compat import require
from eksft.jobs.metrics import MetricsJsonlCallback
from eksft.jobs.output_dir import resolve_resume
from eksft.losses import BoundLoss
from eksft.losses.checks import NonFiniteError
from eksft.losses.targets import step_scale
from eksft.models.head import add_loss_forward, lm_head_parts

from .config import EKSFTConfig
from .divergence import TrainingDiverged, diverged
from .interval import RestoreInterval, write_interval
from .psft import OLD_LOGPS, OldPolicyQueue
from .reference import load_reference
from .sed import resolve_tau
from .sft_data import prepare_checked
from .step_log import METRIC as PERSISTENT_METRIC
from .step_log import MaskTracker, MetricAccumulator

logger = logging.getLogger(__name__)

__all__ = ["EKSFTTrainer", "TrainingDiverged"]


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

    def __init__(self, model, args: EKSFTConfig | None = None, *, sed_calibration_dataset=None, **kwargs):
        if args is None or not isinstance(args, EKSFTConfig):
            raise ValueError("EKSFTTrainer needs an EKSFTConfig as `args` (it carries loss_type and the loss options).")
        self.loss = BoundLoss.from_config(args)  # options checked before any model loads; the path is final below
        require("transformers.", "trl.trainer.sft")  # the private methods overridden below still exist
        # The default reference of an in-memory policy is a copy of its starting weights. Take it before
        # SFTTrainer.__init__: TRL patches `model.forward` with a closure over the policy (fused lm head), and a
        # later deep copy would keep calling the policy's forward.
        start_copy = None
        if (
            self.loss.needs_reference
            and not isinstance(model, str)
            and not args.ref_model
            and kwargs.get("peft_config") is None
            and not is_peft_model(model)
        ):
            start_copy = copy.deepcopy(model)
        with _trl_loss_type(args):
            super().__init__(model, args=args, **kwargs)
        self.loss_is_scaled_for_ga = True  # compute_loss scales for accumulation itself (step 3 above)
        self.loss = BoundLoss.from_config(args, self.model)  # now with the model: its head may rule out the fused path
        if self.loss.fused:
            add_loss_forward(self.model.get_base_model() if is_peft_model(self.model) else self.model)
        elif args.loss_implementation == "auto":
            logger.info("loss_implementation=auto: using the logits path (%s).", self.loss.why_not_fused)
        # PSFT's clipped ratio has no meaning without an old policy: evaluation reports the SFT NLL.
        self.eval_loss = (
            BoundLoss.from_config(args, loss_type="sft", implementation="logits")
            if args.loss_type == "psft"
            else self.loss
        )
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
        if self.loss.needs_reference:  # losses without a reference never load one
            self.ref_model = load_reference(
                self, model if isinstance(model, str) else None, args.ref_model, start_copy, self.loss.fused
            )
        self.mask_tracker = (
            MaskTracker(args.mask_persistence_steps, args.mask_persistence_share)
            if args.mask_persistence_steps > 0
            else None
        )
        self.add_callback(MetricsJsonlCallback(args.output_dir))
        self.add_callback(RestoreInterval(self))
        self.add_callback(_TrackMasks(self))
        self._resumed_from = None

    @property
    def loss_implementation(self) -> str:
        """``fused`` or ``logits``: the path ``BoundLoss`` chose."""
        return "fused" if self.loss.fused else "logits"

    # ------------------------------------------------------------------------------------------------------ data
    def _prepare_dataset(self, dataset, processing_class, args, packing, formatting_func, dataset_name):
        return prepare_checked(
            super()._prepare_dataset, dataset, processing_class, args, packing, formatting_func, dataset_name
        )

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        if self._psft is None:
            return super().get_batch_samples(epoch_iterator, num_batches, device)
        return self._psft.get_batch_samples(self, super().get_batch_samples, epoch_iterator, num_batches, device)

    # ------------------------------------------------------------------------------------------------------ train
    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        """``resume_from_checkpoint``: a checkpoint folder, or ``latest``/``True`` for the newest complete one of
        output_dir; an incomplete or missing folder is an error naming a complete one (eksft/jobs/output_dir.py)."""
        resume_from_checkpoint = resolve_resume(resume_from_checkpoint, self.args.output_dir)
        self._resumed_from = resume_from_checkpoint
        if self.args.loss_type == "sed_sft":
            resuming = bool(resume_from_checkpoint)
            self.sed_tau = resolve_tau(self, self._sed_calibration_dataset, resuming)
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        training = model.training
        labels, old_logps = inputs["labels"], inputs.get(OLD_LOGPS)
        fwd = {k: v for k, v in inputs.items() if k not in ("labels", OLD_LOGPS)}
        fwd["use_cache"] = False
        loss_fn = self.loss if training or old_logps is not None else self.eval_loss
        batch = dict(  # what the loss takes per micro-batch besides the tensors
            num_items_in_batch=num_items_in_batch if training else None,
            position_ids=inputs.get("position_ids"),
            tau=self.sed_tau,
            seed=self._random_mask_seed() if training else self.args.seed,
        )
        try:
            if loss_fn.fused:  # the policy's forward ends in the loss (models/head.py): its lm head is gathered there
                ref = self._reference(model, fwd, hidden=True) if loss_fn.needs_reference else None
                outputs = model(**fwd, labels=labels, eksft_loss=loss_fn, eksft_reference=ref, eksft_batch=batch)
                result = outputs.result
                result.loss = outputs.loss  # the tensor that came out through the wrappers (DDP, autocast)
            else:
                outputs = model(**fwd)  # the one policy forward: logits (B, T, V) with graph
                ref_logits = self._reference(model, fwd) if loss_fn.needs_reference else None
                result = loss_fn.on_logits(outputs.logits, labels, ref_logits=ref_logits, old_logps=old_logps, **batch)
        except NonFiniteError as e:  # the loss's own input checks (logits, hidden states, PSFT's old log-probs, ...)
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

    @torch.no_grad()
    def _reference(self, model, fwd: dict, hidden: bool = False):
        """The frozen reference on the batch the policy sees, no graph kept: ``(B, T, V)`` logits, or with ``hidden``
        ``(final hidden states, LMHead)`` (the head's weight is gathered later, inside the policy's forward). Without
        a reference model (LoRA) it is the policy with its adapters disabled (lm_head carries no adapter)."""
        ref = self.ref_model
        if ref is None:
            ref = self.accelerator.unwrap_model(model)
            if not is_peft_model(ref):
                raise RuntimeError("no reference model and the policy has no adapters to disable (trainer bug).")
        with ref.disable_adapter() if self.ref_model is None else contextlib.nullcontext():
            if not hidden:
                return ref(**fwd).logits.detach()
            states = ref(**fwd, eksft_hidden=True).last_hidden_state.detach()
        return states, lm_head_parts(self.accelerator.unwrap_model(ref))

    def _scale(self, loss, num_items_in_batch):
        """This micro-batch's share of the optimiser step's loss: the whole rule is ``targets.step_scale``."""
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
        raise diverged(self.args, step, quantity, value, after_step)

    # ------------------------------------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self, model, trial):
        """Refuse non-finite weights; store the unlogged part of the logging interval (restored on resume), then
        transformers' checkpoint, whose trainer_state.json is written last (a checkpoint is complete with it)."""
        self.check_weights_finite()
        write_interval(self, os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}"))
        return super()._save_checkpoint(model, trial)

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


class _TrackMasks(TrainerCallback):
    """Folds each optimiser step's masks into the trainer's :class:`MaskTracker` (before that step is logged) and
    writes ``OUTPUT_DIR/mask_targets.json`` when training ends (step_log.py)."""

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
