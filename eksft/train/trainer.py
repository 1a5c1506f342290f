"""``EKSFTTrainer``: TRL's ``SFTTrainer`` with the loss of ``eksft.losses`` (config ``loss_type``).

A training step, top to bottom (one policy forward per micro-batch):

1. ``get_batch_samples``: for PSFT, old-policy log-probs are attached when a data batch is drawn (psft.py).
2. ``compute_loss``, logits path: policy forward -> full logits (with graph); the reference's logits (reference.py)
   when the loss needs them; ``loss_seam.compute`` calls the loss function, which takes its statistics from the
   detached logits of this same forward.
   Fused path (``loss_implementation`` fused, or auto where it applies; ``loss_seam.resolve_implementation``): the
   reference's backbone gives final hidden states (no logits); the policy is called with ``eksft_head_loss=`` a
   closure, so inside its own forward (fused_forward.py) the backbone's hidden states and the gathered lm head go
   to ``loss_seam.compute_fused`` (``eksft.losses.fused.fused_head_loss``, same options). No ``(B, T, V)`` logits.
3. Normalisation: with ``normalization="tokens"`` and ``num_items_in_batch`` the loss is already scaled for the
   whole optimiser step (times the process count, as DDP averages; like TRL). Otherwise it is a per-micro-batch
   mean and we divide by the accumulation steps here, so ``loss_is_scaled_for_ga`` is always True: one place.
4. Metrics: ``LossResult.metrics`` accumulate (metrics.py) and go out with every ``log``.

A non-finite loss (the losses raise ``ValueError`` on NaN/inf logits) stops training with :class:`TrainingDiverged`
naming the step and the last good checkpoint. The trainer holds no loss maths.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os

import torch
from accelerate.utils import is_peft_model
from datasets import Dataset
from transformers.modeling_outputs import CausalLMOutput
from transformers.trainer_utils import get_last_checkpoint
from trl import SFTTrainer

from eksft.models.head import lm_head_parts

from . import loss_seam
from .config import EKSFTConfig
from .metrics import MetricAccumulator, MetricsJsonlCallback
from .psft import OLD_LOGPS, OldPolicyQueue
from .fused_forward import add_hidden_forward, gathered
from .reference import load_reference, reference_hidden, reference_logits
from .sed import resolve_tau

logger = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """Raised when the loss becomes NaN/inf; the message names the step and the checkpoint to resume from."""


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

    def __init__(self, model, args: EKSFTConfig | None = None, *, sed_calibration_dataset: Dataset | None = None,
                 **kwargs):  # fmt: skip
        if args is None or not isinstance(args, EKSFTConfig):
            raise ValueError("EKSFTTrainer needs an EKSFTConfig as `args` (it carries loss_type and the loss options).")
        loss_seam.validate(args)
        # The default reference of an in-memory policy is a copy of its starting weights. Take it before
        # SFTTrainer.__init__: TRL patches `model.forward` with a closure over the policy (fused lm head), and a
        # later deep copy would keep calling the policy's forward.
        start_copy = None
        if (loss_seam.needs_reference(args) and not isinstance(model, str) and not args.ref_model
                and kwargs.get("peft_config") is None and not is_peft_model(model)):  # fmt: skip
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
                sed_calibration_dataset, self.processing_class, args, False, None, "sed_calibration")  # fmt: skip
        self.ref_model = None
        if loss_seam.needs_reference(args):  # losses without a reference never load one
            self.ref_model = load_reference(self, model if isinstance(model, str) else None, args.ref_model, start_copy,
                                            hidden_forward=self.loss_implementation == "fused")  # fmt: skip
        self.add_callback(MetricsJsonlCallback(args.output_dir))

    def _resolve_implementation(self, args) -> str:
        """'fused' or 'logits' (loss_seam.resolve_implementation, then the model's head); patches the forward."""
        impl, reason = loss_seam.resolve_implementation(args), loss_seam.fused_unsupported(args)
        if impl == "fused":
            try:
                lm_head_parts(self.model)  # refuses LoRA / modules_to_save on lm_head, non-linear heads
            except ValueError as e:
                if args.loss_implementation == "fused":
                    raise ValueError(f"EKSFTConfig.loss_implementation='fused': {e}") from e
                impl, reason = "logits", str(e)
        if impl == "fused":
            add_hidden_forward(self.model.get_base_model() if is_peft_model(self.model) else self.model)
        elif args.loss_implementation == "auto":
            logger.info("loss_implementation=auto: using the logits path (%s).", reason)
        return impl

    # ------------------------------------------------------------------------------------------------------ data
    def _prepare_dataset(self, dataset, processing_class, args, packing, formatting_func, dataset_name):
        before = len(dataset) if isinstance(dataset, Dataset) and "input_ids" not in dataset.column_names else None
        out = super()._prepare_dataset(dataset, processing_class, args, packing, formatting_func, dataset_name)
        # TRL drops records left with no response token by truncation, silently; count them in ONE warning.
        if before is not None and not packing and len(out) < before:
            logger.warning(
                "%d of %d %s records have no response token left after truncation to max_length=%s and were "
                "dropped; raise max_length (or shorten prompts) to keep them.",
                before - len(out), before, dataset_name, args.max_length,
            )  # fmt: skip
        return out

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        if self._psft is None:
            return super().get_batch_samples(epoch_iterator, num_batches, device)
        return self._psft.get_batch_samples(self, super().get_batch_samples, epoch_iterator, num_batches, device)

    # ------------------------------------------------------------------------------------------------------ train
    def train(self, resume_from_checkpoint=None, *args, **kwargs):
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
        kw = dict(tau=self.sed_tau, num_items_in_batch=num_items_in_batch if training else None,
                  position_ids=inputs.get("position_ids"),
                  seed=self._random_mask_seed() if training else self.args.seed)  # fmt: skip
        try:
            if self.loss_implementation == "fused":
                outputs, result = self._fused_forward(model, fwd, labels, **kw)
            else:
                outputs = model(**fwd)  # the one policy forward: logits (B, T, V) with graph
                ref_logits = reference_logits(self, model, fwd) if loss_seam.needs_reference(self.args) else None
                result = loss_seam.compute(self.args, outputs.logits, labels, ref_logits=ref_logits,
                                           old_logps=old_logps, loss_type=loss_type, **kw)  # fmt: skip
        except ValueError as e:
            if "NaN or inf" in str(e):
                raise TrainingDiverged(self._diverged_message(str(e))) from e
            raise
        loss = result.loss
        if not torch.isfinite(loss.detach()).all():
            raise TrainingDiverged(self._diverged_message(f"loss = {float(loss.detach())}"))
        if training:
            loss = self._scale(loss, num_items_in_batch)
        self._loss_metrics["train" if training else "eval"].add(result.metrics)
        return (loss, outputs) if return_outputs else loss

    def _fused_forward(self, model, fwd, labels, **kw):
        """Reference hidden states first (no grad), then the one policy forward, which ends in the loss."""
        ref_hidden = ref_head = None
        if loss_seam.needs_reference(self.args):
            ref_hidden, ref_head = reference_hidden(self, model, fwd)
        box = {}

        def head_loss(hidden, head):  # runs inside the policy's forward, lm head gathered (fused_forward.py)
            with gathered(ref_head) as ref:
                box["result"] = loss_seam.compute_fused(self.args, hidden, head, labels, ref_hidden=ref_hidden,
                                                        ref_head=ref, **kw)  # fmt: skip
            return CausalLMOutput(loss=box["result"].loss)

        outputs = model(**fwd, eksft_head_loss=head_loss)
        result = box["result"]
        result.loss = outputs.loss  # the tensor that came out through the wrappers (DDP, autocast)
        return outputs, result

    def _scale(self, loss, num_items_in_batch):
        if self.args.normalization == "tokens" and num_items_in_batch is not None:
            if self.args.average_tokens_across_devices:  # num_items_in_batch counts every rank; DDP averages
                loss = loss * (self.accelerator.num_processes // self.get_tp_size())
            return loss
        return loss / self.current_gradient_accumulation_steps

    def _random_mask_seed(self) -> int:
        step, i = self._micro
        self._micro = (self.state.global_step, i + 1 if step == self.state.global_step else 0)
        return self.args.seed * 1_000_003 + self.state.global_step * 1_009 + self._micro[1]

    def _diverged_message(self, reason: str) -> str:
        last = get_last_checkpoint(self.args.output_dir) if os.path.isdir(self.args.output_dir) else None
        resume = f"resume with --resume_from_checkpoint {last}" if last else "no checkpoint was saved yet"
        return (
            f"Training stopped: non-finite loss at optimiser step {self.state.global_step + 1} ({reason}). "
            f"Last good checkpoint: {last or 'none'}; {resume} after lowering learning_rate or checking the data."
        )

    # ------------------------------------------------------------------------------------------------------ logs
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if self.model.training else "eval"
        summary = self._loss_metrics[mode].summary()
        self._loss_metrics[mode].clear()
        if mode == "eval":
            summary = {f"eval_{k}": v for k, v in summary.items()}
        elif summary and self.args.loss_type == "sed_sft":
            summary["sed_tau"] = self.sed_tau
        for k, v in summary.items():
            logs.setdefault(k, v)  # never overwrite transformers' loss / eval_loss
        super().log(logs, start_time)
