"""``eksft`` under ``accelerate launch`` on a machine without GPUs, with DeepSpeed ZeRO-3 or FSDP2: check a launch
config (and the test suite's engine runs) on CPU processes over gloo before renting GPUs.

    accelerate launch --config_file configs/accelerate/zero3_cpu.yaml -m eksft.cpu_launch train CONFIG.yaml \
        --use_cpu true --bf16 false
    accelerate launch --config_file configs/accelerate/fsdp2_cpu.yaml -m eksft.cpu_launch train CONFIG.yaml \
        --use_cpu true --bf16 false --deepspeed ''

It runs ``eksft.cli.main`` (any command, same arguments) after two changes to the launched process, and nothing
imports it on a normal run:

- **FSDP2**: accelerate builds FSDP only for GPU-like devices; on CPU processes (``--use_cpu true``, a gloo group) its
  ``AcceleratorState`` stays ``MULTI_CPU`` and the run silently becomes DDP. Where the launch asked for FSDP
  (``ACCELERATE_USE_FSDP``, set by ``distributed_type: FSDP``), the state is switched to ``FSDP`` with the plugin
  accelerate built from the same config, exactly what accelerate's own GPU branch does; accelerate then calls
  torch's ``fully_shard`` on a CPU device mesh (gloo has the all-gather and reduce-scatter it needs).
- **DeepSpeed**: DeepSpeed's CPU backend compiles a shared-memory all-reduce C++ op when its process group starts
  (about 110 s of CPU time, cached in ``~/.cache/torch_extensions``). Training never uses it (it serves DeepSpeed's
  inference all-reduce; training collectives go through torch.distributed/gloo), so it is marked unavailable and
  nothing is compiled. And where the training config itself names a DeepSpeed JSON (``deepspeed:``, as the paper
  configs do), transformers builds the model inside ``deepspeed.zero.Init``, whose config reads the world size from
  DeepSpeed's own communication backend; on CPU processes accelerate starts only torch's gloo group, so DeepSpeed
  would see one process and refuse the batch sizes (``train_batch_size ... 16 != 1 * 8 * 1``). DeepSpeed's backend
  is started over gloo first (:func:`start_deepspeed_comm`), as accelerate's GPU branch does with NCCL.

Not for training runs: CPU processes are slow, and the GPU-only parts (NCCL, bf16 kernels, offload) are not exercised.
"""

from __future__ import annotations

import os
import sys


def enable_fsdp_on_cpu() -> None:
    """Make accelerate's state ``FSDP`` on CPU processes when the launch asked for FSDP (see the module docstring)."""
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType

    original = AcceleratorState.__init__
    if getattr(original, "_eksft_cpu_fsdp", False):
        return

    def __init__(self, *args, fsdp_plugin=None, **kwargs):
        original(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP  # accelerate's GPU branch, state.py (AcceleratorState)
            self.fsdp_plugin = fsdp_plugin
            PartialState._shared_state["distributed_type"] = DistributedType.FSDP

    __init__._eksft_cpu_fsdp = True
    AcceleratorState.__init__ = __init__


def skip_deepspeed_shm_op() -> None:
    """Mark DeepSpeed's CPU shared-memory all-reduce op unavailable, so its process group compiles nothing."""
    try:
        import deepspeed.ops
    except ImportError:  # the launch will say DeepSpeed is missing
        return
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False  # one dict, edits persist (deepspeed/ops)


def start_deepspeed_comm() -> None:
    """On a multi-process DeepSpeed launch, start DeepSpeed's communication backend over gloo (module docstring)."""
    deepspeed_launch = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
    if not deepspeed_launch or int(os.environ.get("WORLD_SIZE", 1)) < 2:
        return
    try:
        import deepspeed
    except ImportError:
        return
    deepspeed.init_distributed(dist_backend="gloo", auto_mpi_discovery=False, verbose=False)


def may_use_deepspeed(argv: list[str]) -> bool:
    """DeepSpeed from the accelerate config, a ``--deepspeed`` flag or the training config's ``deepspeed:`` (read as
    text: a false positive only costs importing DeepSpeed, a miss the one-off compile)."""
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true" or any("deepspeed" in a for a in argv):
        return True
    for path in argv[1:2]:  # `eksft COMMAND CONFIG.yaml ...`
        try:
            with open(path, encoding="utf-8") as f:
                return "deepspeed" in f.read()
        except OSError:
            return False
    return False


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        enable_fsdp_on_cpu()
    elif may_use_deepspeed(argv):
        skip_deepspeed_shm_op()
        start_deepspeed_comm()
    from eksft.cli import main as cli_main

    return cli_main(argv)


def exit_after_run(code) -> None:
    """End a launched process: run Python's exit handlers (``eksft train``'s process-group shut-down among them),
    flush, then ``os._exit``. Under load, gloo's C++ threads aborted a rank during the interpreter's own teardown
    ("terminate called without an active exception", exit -6) after training had finished and the model was written;
    accelerate then failed the whole launch. ``os._exit`` skips only that teardown."""
    import atexit

    if isinstance(code, str):  # sys.exit("message")
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(0 if code is None else int(code))


if __name__ == "__main__":
    try:
        status = main()
    except SystemExit as stop:  # argparse errors, --help
        status = stop.code
    exit_after_run(status)
