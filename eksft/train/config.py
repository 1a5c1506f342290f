"""``EKSFTConfig``: one typed config for ``eksft train``: TRL's ``SFTConfig`` plus the loss, reference, data and LoRA
fields. The same names work in YAML, as ``--flags`` and in Python; each ``help`` below is the ``--help`` text and the
field table of docs/training.md (generated from this dataclass by ``eksft.docgen``).

``loss_type`` clash: ``SFTConfig.loss_type`` means TRL's ``nll``/``dft``. Here it is *overridden* to name a loss of
``eksft.losses.LOSSES`` (default ``eksft``), so the field users write is the natural one. ``EKSFTTrainer`` replaces
``SFTTrainer.compute_loss`` entirely, so TRL's meaning is never read after construction (see trainer.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from trl import SFTConfig

from eksft.jobs.config import RunConfig
from eksft.jobs.config import config_field as _f
from eksft.losses import LOSSES, SPECS
from eksft.losses.eksft import LAMBDA_ENTROPY, LAMBDA_KL, RHO
from eksft.losses.selection import SCOPES

LOSS_IMPLEMENTATIONS = ("auto", "fused", "logits")


def _fused_limits() -> str:
    """What the fused head does not serve, from the loss table (eksft.losses.SPECS), for the help text."""
    parts = [name for name, spec in SPECS.items() if not spec.fused]
    parts += [
        f"{name} with {option} other than {'/'.join(values)}"
        for name, spec in SPECS.items()
        for option, values in spec.fused_options.items()
    ]
    return ", ".join(parts)


_FUSED_LIMITS = _fused_limits()


@dataclass
class EKSFTConfig(RunConfig, SFTConfig):
    r"""
    Configuration class for [`EKSFTTrainer`]: TRL's [`~trl.SFTConfig`] (and so transformers'
    [`~transformers.TrainingArguments`]) plus the fields below. The same names work in YAML, as `eksft train --flags`
    and as keyword arguments; `eksft train --help` and docs/training.md list every field with its default.
    model_name_or_path, dtype, the data fields but ref_model's and eval_*, overwrite_output_dir and bf16 are
    [`eksft.jobs.config.RunConfig`]'s, declared once for this config and `eksft rl`'s `RLConfig`.

    Parameters:
        > Loss

        loss_type (`str`, *optional*, defaults to `"eksft"`):
            Loss of `eksft.losses.LOSSES` to train with (`eksft losses` lists them; formulas in docs/losses.md).
            Overrides TRL's `nll`/`dft` meaning of the field.
        loss_implementation (`str`, *optional*, defaults to `"auto"`):
            `"fused"`: the memory-efficient lm head (no `(B, T, V)` logits); `"logits"`: full logits; `"auto"`:
            fused where the loss and the model allow it.
        rho (`float`, *optional*, defaults to `0.2`):
            EKSFT: share of valid targets selected by each statistic (entropy, KL); 0 is plain SFT.
        lambda_entropy (`float`, *optional*, defaults to `0.05`):
            EKSFT, global_reg, random_mask: weight of the entropy bonus on masked targets, per `entropy_unit`.
        lambda_kl (`float`, *optional*, defaults to `0.05`):
            EKSFT, global_reg, random_mask: weight of the KL(policy || reference) penalty, per nat.
        selection (`str`, *optional*, defaults to `"union"`):
            EKSFT: how the entropy and KL sets combine (`union`, `intersection`, `entropy`, `kl`).
        scope (`str`, *optional*, defaults to `"micro_batch"`):
            EKSFT: the candidate set of one Top-K (`micro_batch`, `sequence`, `global`).
        normalization (`str`, *optional*, defaults to `"mean"`):
            `"mean"` per micro-batch (the paper) or `"tokens"` over the optimiser step's valid targets.
        variant (`str`, *optional*, defaults to `"paper"`):
            EKSFT: the paper's equations or `"official"` (the authors' code).
        entropy_unit (`str`, *optional*, defaults to `"normalized"`):
            Unit of the entropy `lambda_entropy` weights: H / ln V (`"normalized"`) or nats.
        iw_clip, psft_epsilon_high, psft_updates_per_batch, asft_lambda, sed_lambda, sed_k, sed_r, sed_tau,
        sed_calibration_samples, sed_calibration_data, gem_beta, random_mask_fraction, eaft_alpha, eaft_entropy,
        eaft_topk, eaft_normalizer:
            The comparison losses' options, named after their loss (`eksft train --help`).

        mask_persistence_steps (`int`, *optional*, defaults to `10`), mask_persistence_share (`float`, *optional*,
        defaults to `0.05`):
            Masking losses: warn once when this share of a step's targets has been masked at every occurrence for
            this many steps (their token ids can never be learned by cross-entropy under the mask); 0 steps: off.

        > Models

        model_name_or_path (`str` or `None`):
            The policy: a hub name, a local folder, or an eksft alias (`smollm2-135m-instruct`, `tiny-random-llama`).
        ref_model (`str` or `None`, *optional*):
            The frozen reference of the KL and importance-weight losses; unset: the policy's starting weights.
        dtype (`str`, *optional*, defaults to `"auto"`):
            Weight dtype to load the models in.
        use_peft, lora_r, lora_alpha, lora_dropout, lora_target_modules:
            LoRA adapters instead of full fine-tuning.

        > Data

        train_file, train_split, eval_file, eval_split, eval_split_size, data_format, prompt_column,
        completion_column, messages_column, conversations_column, system_column, system_prompt, max_samples:
            Where the records come from (a JSON Lines file, a dataset folder or a hub dataset),
            their format and columns (docs/training.md, "Data").

        > Output

        overwrite_output_dir (`bool`, *optional*, defaults to `False`):
            Start over in an `output_dir` that already holds a run; without it such a folder is refused unless
            `resume_from_checkpoint` is set.
        bf16 (`bool` or `None`, *optional*, defaults to `None`):
            bf16 mixed precision; unset: on where a bf16-capable GPU is present.
    """

    # ------------------------------------------------------------------------------------------------------ loss
    loss_type: str = _f(
        "eksft", "Loss of eksft.losses.LOSSES to train with (overrides TRL's nll/dft meaning).", choices=sorted(LOSSES)
    )
    loss_implementation: str = _f(
        "auto",
        "'fused': the memory-efficient lm head (eksft.losses.fused): the policy and "
        "reference return final hidden states and the loss projects only the scored targets, "
        "in chunks, never building (B, T, V) logits; " + _FUSED_LIMITS + " and a PEFT-wrapped "
        "lm_head are an error. 'logits': losses on full (B, T, V) logits. 'auto': fused "
        "where it applies, else logits (one info log line).",
        choices=list(LOSS_IMPLEMENTATIONS),
    )
    rho: float = _f(
        RHO,
        "EKSFT: share of valid targets selected by each statistic (Top-K, k = ceil(rho*N)); 0 = SFT.",
        range="[0, 1]",
    )
    lambda_entropy: float = _f(
        LAMBDA_ENTROPY,
        "EKSFT/global_reg/random_mask: weight of the entropy bonus on masked targets, "
        "per unit of entropy_unit (default H / ln V: 0.05 is the published strength, 0.0042 "
        "per nat at V = 151,936).",
        range="[0, inf)",
    )
    lambda_kl: float = _f(
        LAMBDA_KL,
        "EKSFT/global_reg/random_mask: weight of the KL(policy||reference) penalty, per nat.",
        range="[0, inf)",
    )
    selection: str = _f("union", "EKSFT: how M_H and M_KL combine.", choices=["union", "intersection", "entropy", "kl"])
    scope: str = _f(
        "micro_batch",
        "EKSFT: candidate set of one Top-K: 'micro_batch' (paper), 'sequence', or "
        "'global' (one threshold across all data-parallel processes; = micro_batch on one process).",
        choices=list(SCOPES),
    )
    normalization: str = _f(
        "mean",
        "'mean': each term over its own token set per micro-batch (paper; the trainer "
        "divides by the accumulation steps). 'tokens': sums over the valid-target count of the "
        "whole optimiser step (num_items_in_batch), invariant to accumulation.",
        choices=["mean", "tokens"],
    )
    variant: str = _f(
        "paper",
        "EKSFT: 'paper' (the paper's equations) or 'official' (the authors' code: off-by-one "
        "statistics, separate entropy/KL sets, sum p(p - log q) penalty, adaptive lambdas; see "
        "docs/losses.md).",
        choices=["paper", "official"],
    )
    entropy_unit: str = _f(
        "normalized",
        "EKSFT/global_reg/random_mask: unit of the entropy that lambda_entropy "
        "weights: 'normalized' = H / ln V (the authors' code, where the published lambda_entropy "
        "= 0.05 comes from) or 'nats' = H (the equations read literally; ln V times stronger at "
        "the same lambda). variant=official requires 'normalized'.",
        choices=["normalized", "nats"],
    )
    iw_clip: float = _f(16.0, "IW-SFT: upper clip of the per-sequence importance weight.", range="[0, inf)")
    psft_epsilon_high: float = _f(
        0.28, "PSFT: upper clip of the ratio pi/pi_old (min(r, 1 + epsilon_high)).", range="[0, inf)"
    )
    psft_updates_per_batch: int = _f(
        8,
        "PSFT: optimiser steps per data batch; old log-probs are snapshotted when a "
        "data batch (this many optimiser steps of data) is drawn. 1 = plain SFT.",
        range="[1, inf)",
    )
    asft_lambda: float = _f(0.1, "ASFT: weight of KL(reference||policy).", range="[0, inf)")
    sed_lambda: float = _f(1.0, "SED-SFT: weight of the (p(y) - 1/2)^2 penalty.", range="[0, inf)")
    sed_k: int = _f(2, "SED-SFT: top-k mass S_k used for calibration and training.", range="[1, inf)")
    sed_r: float = _f(0.7, "SED-SFT: tau is the (1 - r) quantile of S_k on the starting model.", range="[0, 1]")
    sed_tau: float | None = _f(
        None,
        "SED-SFT: fixed tau; when unset it is calibrated before training and saved "
        "to OUTPUT_DIR/sed_tau.json (reused on resume).",
        range="[0, 1]",
    )
    sed_calibration_samples: int = _f(256, "SED-SFT: records used to calibrate tau.", range="[1, inf)")
    sed_calibration_data: str | None = _f(
        None, "SED-SFT: data file for calibration (same formats as train_file); default: the training data."
    )
    gem_beta: float = _f(
        0.7, "GEM: temperature beta of the detached target distribution softmax(z/beta).", range="(0, inf)"
    )
    eaft_alpha: float = _f(
        1.0, "EAFT: exponent of the detached normalised-entropy weight h^alpha; 0 = SFT.", range="[0, inf)"
    )
    eaft_entropy: str = _f(
        "topk",
        "EAFT: the entropy h: 'topk' = entropy of the softmax over the eaft_topk largest logits / "
        "eaft_normalizer (the authors' statistic, which produced the published numbers; docs/losses.md) or 'full' = "
        "full-vocabulary entropy / ln V.",
        choices=["topk", "full"],
    )
    eaft_topk: int = _f(20, "EAFT: logits kept for eaft_entropy='topk' (>= 2; the authors used 20).", range="[2, inf)")
    eaft_normalizer: str = _f(
        "authors",
        "EAFT: what the top-k entropy is divided by: 'authors' = 3.0, the constant of the authors' code "
        "(LLaMA-Factory's EAFT loss exactly, at eaft_topk = 20) or 'ln_k' = ln(eaft_topk), h in [0, 1] for any k "
        "(the loss is the authors' x (3 / ln k)^eaft_alpha, 1.0014^eaft_alpha at k = 20).",
        choices=["authors", "ln_k"],
    )
    random_mask_fraction: float = _f(
        0.1, "random_mask: share of targets dropped from CE (seeded by seed and step).", range="[0, 1]"
    )
    mask_persistence_steps: int = _f(
        10,
        "EKSFT/random_mask: a token id masked at every occurrence for this many steps in a row (steps it "
        "occurred in) counts as persistently masked (logged as persistently_masked_fraction, listed in "
        "OUTPUT_DIR/mask_targets.json). 0 = no tracking.",
        range="[0, inf)",
    )
    mask_persistence_share: float = _f(
        0.05,
        "EKSFT/random_mask: warn once when persistently masked tokens make up this share of a step's targets "
        "(they never get cross-entropy). 0 = never warn.",
        range="[0, 1]",
    )
    # ------------------------------------------------------------------------------------------------- models
    ref_model: str | None = _f(
        None,
        "Reference for KL/IW losses. Default: a frozen copy of the starting checkpoint "
        "(with LoRA: the same model with adapters disabled). Must share the tokenizer and "
        "vocabulary size.",
    )
    use_peft: bool = _f(False, "Train LoRA adapters instead of all weights.")
    lora_r: int = _f(16, "LoRA rank.", range="[1, inf)")
    lora_alpha: int = _f(32, "LoRA alpha.", range="(0, inf)")
    lora_dropout: float = _f(0.0, "LoRA dropout.", range="[0, 1)")
    lora_target_modules: list[str] | None = _f(None, "LoRA target modules (default: all linear layers but lm_head).")
    # ---------------------------------------------------------------------------------------------------- data
    eval_file: str | None = _f(None, "Evaluation data (same formats). Unset: see eval_split_size.")
    eval_split: str | None = _f(None, "Split of a hub dataset or folder (or of train_file's) used for evaluation.")
    eval_split_size: float = _f(
        0.0, "Hold out this share (0-1) of the training records for evaluation.", range="[0, 1)"
    )
    #: SFTConfig's own fields with a range, after RunConfig's (TRAINING_RANGES); checked by config_io.check_fields
    INHERITED_RANGES = {**RunConfig.INHERITED_RANGES, "max_length": "[1, inf)"}

    def __post_init__(self):
        if self.deepspeed and os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
            # Checked before SFTConfig's own (which would import DeepSpeed): one sharding backend per run.
            raise ValueError(
                f"EKSFTConfig.deepspeed: {self.deepspeed!r} is set but accelerate was launched with FSDP "
                "(e.g. --config_file configs/accelerate/fsdp.yaml); pass --deepspeed '' to train with FSDP, or "
                "launch without the FSDP config to use DeepSpeed."
            )
        if self.loss_type not in LOSSES:
            raise ValueError(
                f"EKSFTConfig.loss_type: {self.loss_type!r} is not a loss; choose one of {sorted(LOSSES)}."
            )
        self.resolve_shared_defaults()  # every choice and range before TRL, transformers or torch read a value
        super().__post_init__()
        self.validate_eksft()

    def validate_eksft(self) -> None:
        """Fail early, naming the field and the fix: what one field's choices and range (``check_fields``, in
        ``resolve_shared_defaults``) cannot say."""
        if self.scope == "global" and self.variant != "paper":
            raise ValueError(
                "EKSFTConfig.scope: 'global' is implemented for variant='paper' only; set variant: paper or "
                "scope: micro_batch."
            )
