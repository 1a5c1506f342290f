"""``train_rl(config)``: the whole ``eksft rl`` job as a function: load the policy and the prompts,
build :class:`~eksft.rl.trainer.DAPOTrainer` (TRL's ``GRPOTrainer`` + dynamic sampling) with the DAPO settings of
:class:`RLConfig` and the rewards of rewards.py, train (or resume), save the final model and tokenizer.

Metrics: GRPOTrainer logs ``reward``, ``rewards/accuracy/mean``, ``entropy``, ``clip_ratio/*``,
``completions/mean_length``, ``completions/clipped_ratio`` … to ``report_to``; the trainer's
:class:`~eksft.jobs.metrics.MetricsJsonlCallback` writes the same dicts to ``OUTPUT_DIR/metrics.jsonl``.
"""

from __future__ import annotations

from eksft.jobs.metrics import MetricsJsonlCallback
from eksft.jobs.output_dir import with_previous_run_remover
from eksft.jobs.policy import check_model_sources, policy_and_tokenizer

from .config import RLConfig
from .data import load_prompts
from .rewards import reward_functions
from .trainer import DAPOTrainer


def build_rl_trainer(cfg: RLConfig, callbacks=None, reward_funcs=None) -> DAPOTrainer:
    """``reward_funcs``: replaces :func:`reward_functions` (tests use scripted rewards; ``reward_weights`` must
    match their number)."""
    if not cfg.model_name_or_path:
        raise ValueError(
            "RLConfig.model_name_or_path is not set: give the SFT output folder, a hub name, "
            "'tiny-random-llama', 'smollm2-135m-instruct' or a .gguf file."
        )
    check_model_sources(cfg)  # a missing path fails in a second, naming the field
    prompts = load_prompts(cfg)  # every gold answer parses before a model is loaded
    model, tokenizer = policy_and_tokenizer(cfg)
    tokenizer.padding_side = "left"  # prompts are left-padded for generation (TRL's own default when it loads one)
    trainer = DAPOTrainer(
        model,
        reward_funcs=reward_funcs or reward_functions(cfg),
        args=cfg,
        train_dataset=prompts,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    trainer.add_callback(MetricsJsonlCallback(cfg.output_dir))
    return trainer


def train_rl(
    cfg: RLConfig, resume_from_checkpoint: str | bool | None = None, callbacks=None, reward_funcs=None
) -> DAPOTrainer:
    resume = resume_from_checkpoint or cfg.resume_from_checkpoint
    trainer = build_rl_trainer(cfg, with_previous_run_remover(cfg, resume, callbacks), reward_funcs)
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(cfg.output_dir)
    return trainer
