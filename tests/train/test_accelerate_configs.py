"""The shipped ``accelerate launch`` configs (configs/accelerate/) parse and mean what docs/training.md says. The GPU
ones need CUDA GPUs, so they cannot run here: each goes through what ``accelerate launch`` does before it starts
processes (its config class, its argument checks, the environment it hands the workers) and the plugin each worker
builds from that environment (FSDP2 / DeepSpeed), which needs no GPU. Their CPU variants (``zero3_cpu.yaml``,
``fsdp2_cpu.yaml``: the same engine settings on 2 processes) really train in tests/train/test_engines.py."""

from __future__ import annotations

import json
import os

import pytest
from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DeepSpeedPlugin, FullyShardedDataParallelPlugin, patch_environment
from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

from eksft.train import EKSFTConfig

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = os.path.join(ROOT, "configs", "accelerate")


def launch(name: str, *extra: str):
    """(args, worker environment) as ``accelerate launch --config_file configs/accelerate/NAME ...`` builds them."""
    argv = ["--config_file", os.path.join(CONFIGS, name), *extra, "-m", "eksft.cli", "train", "c.yaml"]
    args, defaults, _ = _validate_launch_command(launch_command_parser().parse_args(argv))
    if args.use_deepspeed:
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)  # as launch_command does
        return args, prepare_deepspeed_cmd_env(args)[1]
    return args, prepare_multi_gpu_env(args)


def test_every_config_loads_with_accelerate_classes():
    names = sorted(os.listdir(CONFIGS))
    assert names == ["deepspeed_zero3.yaml", "fsdp.yaml", "fsdp2_cpu.yaml", "multi_node_example.yaml", "zero3_cpu.yaml"]
    for name in names:
        assert isinstance(load_config_from_file(os.path.join(CONFIGS, name)), ClusterConfig), name


@pytest.mark.parametrize("name, machines", [("deepspeed_zero3.yaml", 1), ("multi_node_example.yaml", 2)])
def test_deepspeed_zero3_uses_the_paper_json(monkeypatch, name, machines):
    monkeypatch.chdir(ROOT)  # the JSON path is relative to the repository root, like the paper configs'
    args, env = launch(name, "--machine_rank", str(machines - 1))
    assert args.use_deepspeed and (args.num_machines, args.num_processes) == (machines, 8 * machines)
    assert env["ACCELERATE_DEEPSPEED_CONFIG_FILE"] == "configs/ds_zero3.json"
    assert "mixed_precision" not in env["ACCELERATE_CONFIG_DS_FIELDS"]  # accelerate refuses it next to a JSON
    with patch_environment(**env):
        plugin = DeepSpeedPlugin()  # reads the JSON; refuses accelerate fields the JSON owns
    assert plugin.zero_stage == 3 and plugin.zero3_init_flag
    with open(os.path.join(ROOT, "configs", "ds_zero3.json"), encoding="utf-8") as f:
        assert json.load(f)["bf16"]["enabled"] == "auto"  # filled from the training config's bf16
    if machines > 1:
        assert args.machine_rank == 1 and args.main_process_ip and args.main_process_port


def test_fsdp2_full_shard_transformer_wrap_bf16():
    args, env = launch("fsdp.yaml")
    assert args.use_fsdp and args.num_processes == 8 and env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    with patch_environment(**env):
        plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True  # FSDP2's full shard
    assert plugin.auto_wrap_policy.__name__ == "transformer_auto_wrap_policy"
    assert "FULL_STATE_DICT" in str(plugin.state_dict_type) and not plugin.activation_checkpointing


def test_deepspeed_training_config_under_fsdp_launch_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(ValueError, match=r"EKSFTConfig\.deepspeed: .*ds_zero3\.json.*--deepspeed ''"):
        EKSFTConfig(output_dir=str(tmp_path), deepspeed="configs/ds_zero3.json", report_to=[])
