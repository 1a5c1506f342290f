"""Every private attribute of transformers, TRL, accelerate, DeepSpeed, argparse and atexit that eksft overrides or
calls.

A private name can change in any release. pyproject.toml bounds the versions below the next minor release and
constraints.txt pins the ones CI tested; this list is what a newer release must still provide. :func:`problems`
checks each entry on the installed versions (a method and the parameters eksft passes or receives, or an instance
attribute that the owner's source still sets), ``tests/test_compat.py`` runs it in the suite, and
:func:`require` runs it when a trainer is built, so a renamed method stops a run at once with one line naming the
attribute and the installed version instead of a traceback deep inside a step.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Private:
    """One private attribute eksft relies on.

    Args:
        owner: ``module:qualname`` of the class (or module) that defines it.
        name: the attribute.
        params: for a method, the parameter names eksft passes or receives, in order (``self`` excluded);
            empty for an attribute.
        set_by: for an instance attribute, the ``module:qualname`` of the function whose source assigns it
            (``self.<name>``); None for a method.
        used_in: the eksft code that depends on it.
    """

    owner: str
    name: str
    params: tuple[str, ...] = ()
    set_by: str | None = None
    used_in: str = ""


TRAINER = "transformers.trainer:Trainer"
SFT = "trl.trainer.sft_trainer:SFTTrainer"
GRPO = "trl.trainer.grpo_trainer:GRPOTrainer"
VLLM_GEN = "trl.generation.vllm_generation:VLLMGeneration"

PRIVATE = (
    Private(TRAINER, "_get_grad_norm", ("model", "grad_norm"), used_in="EKSFTTrainer._get_grad_norm (divergence)"),
    Private(TRAINER, "_save_checkpoint", ("model", "trial"), used_in="EKSFTTrainer._save_checkpoint"),
    Private(TRAINER, "_get_output_dir", ("trial",), used_in="EKSFTTrainer._save_checkpoint"),
    Private(TRAINER, "_get_num_items_in_batch", ("batch_samples", "device"), used_in="train/psft.py"),
    Private(TRAINER, "_prepare_inputs", ("inputs",), used_in="train/psft.py"),
    Private(TRAINER, "_tr_loss", set_by=f"{TRAINER}._inner_training_loop", used_in="EKSFTTrainer resume state"),
    Private(
        TRAINER,
        "_globalstep_last_logged",
        set_by=f"{TRAINER}._inner_training_loop",
        used_in="EKSFTTrainer resume state",
    ),
    Private(
        SFT,
        "_prepare_dataset",
        ("dataset", "processing_class", "args", "packing", "formatting_func", "dataset_name"),
        used_in="EKSFTTrainer._prepare_dataset",
    ),
    Private(
        GRPO,
        "_calculate_rewards",
        ("inputs", "prompts", "completions", "completion_ids_list"),
        used_in="DAPOTrainer._calculate_rewards",
    ),
    Private(GRPO, "_generate_and_score_completions", ("inputs",), used_in="DAPOTrainer (dynamic sampling)"),
    Private(GRPO, "_metrics", set_by=f"{GRPO}.__init__", used_in="DAPOTrainer dynamic-sampling metrics"),
    Private(GRPO, "_tokenizer", set_by=f"{GRPO}.__init__", used_in="DAPOTrainer refilled batch padding"),
    # vLLM's CPU build only (eksft/rl/vllm_cpu.py): on a GPU TRL's VLLMGeneration runs untouched.
    Private(VLLM_GEN, "_init_vllm", used_in="rl/vllm_cpu.CPUColocateGeneration (eager engine, policy dtype)"),
    Private(VLLM_GEN, "_iter_named_params", used_in="rl/vllm_cpu.CPUColocateGeneration.sync_weights"),
    Private(
        "transformers.hf_argparser:HfArgumentParser",
        "_parse_dataclass_field",
        ("parser", "field"),
        used_in="config_io (YAML = flags = fields)",
    ),
    Private(
        "transformers.configuration_utils:PreTrainedConfig",
        "_attn_implementation",
        used_in="train/reference.py (reference model loads with the policy's attention)",
    ),
    Private("argparse:ArgumentParser", "_actions", set_by="argparse:_ActionsContainer.__init__", used_in="config_io"),
    Private(
        "argparse:ArgumentParser",
        "_get_option_tuples",
        ("option_string",),
        used_in="commands/flags.Parser (an abbreviation of both spellings of one flag)",
    ),
    Private(
        "argparse:HelpFormatter",
        "_format_action_invocation",
        ("action",),
        used_in="commands/flags.HelpFormatter (--help shows one spelling)",
    ),
    # Launch-only code (eksft/cpu_launch.py: ZeRO-3 / FSDP2 on CPU processes), never imported by a normal run.
    Private("accelerate.state:PartialState", "_shared_state", used_in="cpu_launch.enable_fsdp_on_cpu"),
    Private("deepspeed.ops", "__compatible_ops__", used_in="cpu_launch.skip_deepspeed_shm_op"),
    Private("atexit", "_run_exitfuncs", used_in="cpu_launch.exit_after_run (exit handlers before os._exit)"),
)


def _resolve(path: str):
    module, _, qualname = path.partition(":")
    obj = importlib.import_module(module)
    for part in qualname.split(".") if qualname else ():
        obj = getattr(obj, part)
    return obj


def _version(owner: str) -> str:
    top = owner.partition(":")[0].split(".")[0]
    if top in ("argparse", "atexit"):  # the standard library
        import platform

        return f"Python {platform.python_version()}"
    try:
        return f"{top} {importlib.import_module(top).__version__}"
    except (ImportError, AttributeError):
        return f"{top} (version unknown)"


def check(p: Private) -> str | None:
    """None when ``p`` holds on the installed versions, else one line naming it, the installed version and the fix."""
    where = f"{p.owner.replace(':', '.')}.{p.name}"
    fix = (
        f"eksft relies on it in {p.used_in}. Fix: install the tested versions "
        "(pip install -c constraints.txt -e .), or update eksft/compat.py and that code."
    )
    try:
        owner = _resolve(p.owner)
    except (ImportError, AttributeError) as e:
        return f"{p.owner} cannot be imported ({e}) with {_version(p.owner)}. {fix}"
    if p.set_by is not None:
        try:
            source = inspect.getsource(_resolve(p.set_by))
        except (ImportError, AttributeError, OSError, TypeError):
            return f"{p.set_by} (which sets {where}) is missing in {_version(p.owner)}. {fix}"
        if f"self.{p.name} =" not in source and f"self.{p.name}:" not in source:
            return f"{where} is no longer set by {p.set_by} in {_version(p.owner)}. {fix}"
        return None
    # A module may provide the name through its __getattr__ (lazily); a class attribute is looked up statically.
    absent = object()
    if inspect.ismodule(owner):
        found = hasattr(owner, p.name)
    else:
        found = inspect.getattr_static(owner, p.name, absent) is not absent
    if not found:
        return f"{where} is missing in {_version(p.owner)}. {fix}"
    if not p.params:
        return None
    fn = getattr(owner, p.name)
    try:
        names = [n for n in inspect.signature(fn).parameters if n != "self"]
    except (TypeError, ValueError):
        return f"{where} has no readable signature in {_version(p.owner)}. {fix}"
    if names[: len(p.params)] != list(p.params):
        return (
            f"{where} takes ({', '.join(names)}) in {_version(p.owner)}, eksft expects ({', '.join(p.params)}). {fix}"
        )
    return None


def problems(entries=PRIVATE) -> list[str]:
    """One line per entry of ``entries`` that does not hold on the installed versions."""
    return [msg for p in entries if (msg := check(p)) is not None]


class IncompatibleVersion(RuntimeError):
    """An installed transformers/TRL no longer has a private attribute eksft relies on (the message names it)."""


@functools.cache
def require(*owner_prefixes: str) -> None:
    """Raise :class:`IncompatibleVersion` with the first problem among the entries whose owner starts with one of
    ``owner_prefixes`` (e.g. ``"transformers."``; all entries without any). Cached: runs once per process."""
    found = problems([p for p in PRIVATE if not owner_prefixes or p.owner.startswith(owner_prefixes)])
    if found:
        raise IncompatibleVersion(found[0])


def quiet_deepspeed_on_cpu() -> None:
    """DeepSpeed, which transformers imports whenever it is installed, prints "Setting accelerator to CPU" to stdout
    the first time it looks for an accelerator and finds none, which corrupts output meant for machines (the
    benchmarks' JSON lines). Where torch sees no accelerator, name the CPU for it (what it would pick anyway)."""
    import torch

    if "DS_ACCELERATOR" not in os.environ and not torch.accelerator.is_available():
        os.environ["DS_ACCELERATOR"] = "cpu"
