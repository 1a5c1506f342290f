"""The engine of a smoke run: the configured one (``deepspeed:``, a training config's ``fsdp``, a pipeline
``launcher`` and its accelerate ``--config_file``), launched as :data:`CPU_PROCESSES` CPU processes over gloo through
:mod:`eksft.cpu_launch` (what tests/train/test_engines.py runs), or on the GPUs there are (at most 2).

The accelerate config of the launch is written into the smoke folder (the shapes of configs/accelerate/zero3_cpu.yaml
and fsdp2_cpu.yaml), so the smoke run needs no file of the repository.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import socket
import sys

CPU_PROCESSES = 2


def _launcher_config(launcher: str | None) -> dict:
    if not launcher:
        return {}
    parts = shlex.split(launcher)
    if "--config_file" in parts and parts.index("--config_file") + 1 < len(parts):
        import yaml

        path = parts[parts.index("--config_file") + 1]
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                return yaml.safe_load(f) or {}
    return {}


def engine_of(values: dict, launcher: str | None = None) -> dict:
    """``{"name": zero1|zero2|zero3|fsdp|ddp|None, "deepspeed": json path or None, "processes": the launch's
    --num_processes or None}`` from a training config's fields and an optional launcher."""
    acc = _launcher_config(launcher)
    parts = shlex.split(launcher) if launcher else []
    processes = (
        int(parts[parts.index("--num_processes") + 1]) if "--num_processes" in parts else acc.get("num_processes")
    )
    ds = values.get("deepspeed") or (acc.get("deepspeed_config") or {}).get("deepspeed_config_file")
    if ds or acc.get("distributed_type") == "DEEPSPEED":
        stage = (acc.get("deepspeed_config") or {}).get("zero_stage", 3)
        if ds:
            if not os.path.isfile(ds):
                raise FileNotFoundError(f"deepspeed={ds!r}: no such file (relative paths are from the current folder).")
            with open(ds, encoding="utf-8") as f:
                stage = (json.load(f).get("zero_optimization") or {}).get("stage", 0)
        return {"name": f"zero{stage}", "deepspeed": ds, "processes": processes}
    if values.get("fsdp") or acc.get("distributed_type") == "FSDP":
        return {"name": "fsdp", "deepspeed": None, "processes": processes}
    return {"name": "ddp" if launcher else None, "deepspeed": None, "processes": processes}


def describe(engine: dict) -> str:
    name = engine["name"]
    if name and name.startswith("zero"):
        return f"DeepSpeed ZeRO-{name[4:]} ({engine['deepspeed'] or 'accelerate config'})"
    return {"fsdp": "FSDP2", "ddp": "DDP (accelerate launch)"}.get(name, "one process")


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_accelerate_config(engine: dict, folder: str, processes: int) -> str:
    """An accelerate config for ``engine`` on ``processes`` processes, in ``folder``."""
    import yaml

    base = {
        "compute_environment": "LOCAL_MACHINE",
        "machine_rank": 0,
        "num_machines": 1,
        "num_processes": processes,
        "rdzv_backend": "static",
        "same_network": True,
        "use_cpu": False,
    }
    name = engine["name"]
    if name.startswith("zero"):
        ds = {"zero3_init_flag": name == "zero3", "deepspeed_multinode_launcher": "standard"}
        if engine["deepspeed"]:
            ds["deepspeed_config_file"] = os.path.abspath(engine["deepspeed"])
        else:
            ds["zero_stage"] = int(name[4:])
        base.update(distributed_type="DEEPSPEED", deepspeed_config=ds)
    elif name == "fsdp":
        fsdp = {
            "fsdp_version": 2,
            "fsdp_reshard_after_forward": True,
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "fsdp_state_dict_type": "FULL_STATE_DICT",
            "fsdp_cpu_ram_efficient_loading": True,
            "fsdp_offload_params": False,
            "fsdp_activation_checkpointing": False,
        }
        base.update(distributed_type="FSDP", fsdp_config=fsdp, mixed_precision="no")
    else:
        base.update(distributed_type="MULTI_GPU", mixed_precision="no", dynamo_backend="NO")
    path = os.path.join(folder, f"accelerate_{name}.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(base, f, sort_keys=False)
    return path


def launcher_for(engine: dict, folder: str, gpus: int) -> tuple[str | None, int]:
    """``(launcher command prefix, processes)`` for the smoke run: None (in this process) without an engine."""
    if not engine["name"]:
        return None, 1
    processes = min(2, gpus) if gpus else CPU_PROCESSES
    config = write_accelerate_config(engine, folder, processes)
    extra = "--multi_gpu " if engine["name"] == "ddp" and processes > 1 else ""
    module = "eksft.cli" if gpus else "eksft.cpu_launch"
    cmd = (
        f"{shlex.quote(sys.executable)} -m accelerate.commands.launch --config_file {shlex.quote(config)} {extra}"
        f"--num_processes {processes} --main_process_port {free_port()} -m {module}"
    )
    return cmd, processes


@contextlib.contextmanager
def child_environment():
    """What the launched processes inherit: one thread each on a CPU, no hub, this eksft on the path."""
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    values = {
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
    }
    if not os.environ.get("OMP_NUM_THREADS"):
        values["OMP_NUM_THREADS"] = "1"
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
