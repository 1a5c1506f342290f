"""``train(config)``: the whole ``eksft train`` job as a function: load the policy, the data and
the optional LoRA config, build :class:`EKSFTTrainer`, train (or resume), save the final model.
"""

from __future__ import annotations

import logging

from eksft.data.formats import Columns, load_records
from eksft.jobs.output_dir import check_writable, with_previous_run_remover
from eksft.jobs.policy import check_model_sources, policy_and_tokenizer

from .config import EKSFTConfig
from .trainer import EKSFTTrainer

logger = logging.getLogger(__name__)


def load_data(cfg: EKSFTConfig):
    """(train, eval or None) datasets in TRL's formats."""
    if not cfg.train_file:
        raise ValueError(
            "EKSFTConfig.train_file is not set: give a .json/.jsonl/.parquet file, a dataset folder or a "
            "hub dataset name."
        )
    kw = dict(
        fmt=cfg.data_format, columns=Columns.of(cfg), max_samples=cfg.max_samples, keep_messages=cfg.assistant_only_loss
    )
    train = load_records(cfg.train_file, split=cfg.train_split, field="train_file", **kw)
    evaluation = None
    if cfg.eval_file or cfg.eval_split:
        evaluation = load_records(
            cfg.eval_file or cfg.train_file,
            split=cfg.eval_split or "train",
            field="eval_file" if cfg.eval_file else "train_file",
            split_field="eval_split",
            **kw,
        )
    elif cfg.eval_split_size > 0:
        parts = train.train_test_split(test_size=cfg.eval_split_size, seed=cfg.seed)
        train, evaluation = parts["train"], parts["test"]
    return train, evaluation


def peft_config(cfg: EKSFTConfig):
    if not cfg.use_peft:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        task_type="CAUSAL_LM",
        target_modules=cfg.lora_target_modules or "all-linear",
    )


def build_trainer(cfg: EKSFTConfig, callbacks=None) -> EKSFTTrainer:
    if not cfg.model_name_or_path:
        raise ValueError(
            "EKSFTConfig.model_name_or_path is not set: give a model folder, a hub name, "
            "'tiny-random-llama', 'smollm2-135m-instruct' or a .gguf file."
        )
    check_model_sources(cfg)  # before reading data: a missing path fails in a second, naming the field
    check_writable(cfg.output_dir, "EKSFTConfig.output_dir")
    train, evaluation = load_data(cfg)
    model, tokenizer = policy_and_tokenizer(cfg)
    calibration = None
    if cfg.loss_type == "sed_sft" and cfg.sed_calibration_data:
        calibration = load_records(
            cfg.sed_calibration_data,
            fmt=cfg.data_format,
            columns=Columns.of(cfg),
            max_samples=cfg.sed_calibration_samples,
            keep_messages=cfg.assistant_only_loss,
            field="sed_calibration_data",
        )
    return EKSFTTrainer(
        model,
        args=cfg,
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=tokenizer,
        peft_config=peft_config(cfg),
        sed_calibration_dataset=calibration,
        callbacks=callbacks,
    )


def train(
    cfg: EKSFTConfig, resume_from_checkpoint: str | bool | None = None, callbacks=None, progress=None
) -> EKSFTTrainer:
    """Build, train (``resume_from_checkpoint`` / ``cfg.resume_from_checkpoint``: a checkpoint folder or ``latest``)
    and save the final model, only when its weights are finite. With ``overwrite_output_dir`` the files of the run
    already in output_dir are removed when training starts. ``eksft train`` first checks the output folder
    (eksft.jobs.command.run_job); this function does not, so callers that manage their folders (demo) keep theirs."""
    resume = resume_from_checkpoint or cfg.resume_from_checkpoint
    trainer = build_trainer(cfg, with_previous_run_remover(cfg, resume, callbacks))
    if progress is not None:  # a caller's own per-step line (the demo's) instead of transformers' bar and log dicts
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(progress)
    trainer.train(resume_from_checkpoint=resume)
    trainer.check_weights_finite()
    trainer.save_model(cfg.output_dir)
    return trainer
