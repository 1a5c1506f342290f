"""``train(config)``: the whole ``eksft train`` job as a function (style.md rule 8): load the policy, the data and
the optional LoRA config, build :class:`EKSFTTrainer`, train (or resume), save the final model.
"""

from __future__ import annotations

import logging

from eksft.data.formats import Columns, load_records

from .config import EKSFTConfig
from .models import is_special, load_causal_lm, load_tokenizer
from .trainer import EKSFTTrainer

logger = logging.getLogger(__name__)


def columns(cfg: EKSFTConfig) -> Columns:
    return Columns(prompt=cfg.prompt_column, completion=cfg.completion_column, messages=cfg.messages_column,
                   conversations=cfg.conversations_column, system=cfg.system_column,
                   system_prompt=cfg.system_prompt)  # fmt: skip


def load_data(cfg: EKSFTConfig):
    """(train, eval or None) datasets in TRL's formats."""
    if not cfg.train_file:
        raise ValueError("EKSFTConfig.train_file is not set: give a .json/.jsonl/.parquet file, a dataset folder or a "
                         "hub dataset name.")  # fmt: skip
    kw = dict(fmt=cfg.data_format, columns=columns(cfg), max_samples=cfg.max_samples,
              keep_messages=cfg.assistant_only_loss)  # fmt: skip
    train = load_records(cfg.train_file, split=cfg.train_split, field="train_file", **kw)
    evaluation = None
    if cfg.eval_file or cfg.eval_split:
        evaluation = load_records(cfg.eval_file or cfg.train_file, split=cfg.eval_split or "train",
                                  field="eval_file" if cfg.eval_file else "train_file", split_field="eval_split",
                                  **kw)  # fmt: skip
    elif cfg.eval_split_size > 0:
        parts = train.train_test_split(test_size=cfg.eval_split_size, seed=cfg.seed)
        train, evaluation = parts["train"], parts["test"]
    return train, evaluation


def peft_config(cfg: EKSFTConfig):
    if not cfg.use_peft:
        return None
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, task_type="CAUSAL_LM",
                      target_modules=cfg.lora_target_modules or "all-linear")  # fmt: skip


def build_trainer(cfg: EKSFTConfig, callbacks=None) -> EKSFTTrainer:
    if not cfg.model_name_or_path:
        raise ValueError("EKSFTConfig.model_name_or_path is not set: give a model folder, a hub name, "
                         "'tiny-random-llama', 'smollm2-135m-instruct' or a .gguf file.")  # fmt: skip
    from eksft.models.smollm import resolve_model_path

    # The demo model's alias becomes its converted folder (made once in $EKSFT_CACHE), like `eksft rl` and the demo.
    cfg.model_name_or_path = resolve_model_path(cfg.model_name_or_path)
    if cfg.ref_model:
        cfg.ref_model = resolve_model_path(cfg.ref_model)
    train, evaluation = load_data(cfg)
    tokenizer = load_tokenizer(cfg.model_name_or_path)
    if cfg.dtype != "auto":
        cfg.model_init_kwargs = {**(cfg.model_init_kwargs or {}), "dtype": cfg.dtype}
    # Plain paths go to TRL as strings (it loads them, and the reference is reloaded from the same path);
    # the offline conveniences are loaded here.
    model = cfg.model_name_or_path
    if is_special(model):
        model = load_causal_lm(model, **(cfg.model_init_kwargs or {}))
        cfg.model_init_kwargs = None
    calibration = None
    if cfg.loss_type == "sed_sft" and cfg.sed_calibration_data:
        calibration = load_records(cfg.sed_calibration_data, fmt=cfg.data_format, columns=columns(cfg),
                                   max_samples=cfg.sed_calibration_samples, keep_messages=cfg.assistant_only_loss,
                                   field="sed_calibration_data")  # fmt: skip
    return EKSFTTrainer(model, args=cfg, train_dataset=train, eval_dataset=evaluation, processing_class=tokenizer,
                        peft_config=peft_config(cfg), sed_calibration_dataset=calibration, callbacks=callbacks)  # fmt: skip


def train(cfg: EKSFTConfig, resume_from_checkpoint: str | bool | None = None, callbacks=None) -> EKSFTTrainer:
    trainer = build_trainer(cfg, callbacks)
    trainer.train(resume_from_checkpoint=resume_from_checkpoint or cfg.resume_from_checkpoint)
    trainer.save_model(cfg.output_dir)
    return trainer
