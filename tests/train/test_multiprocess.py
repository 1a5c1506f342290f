"""Two data-parallel CPU processes (gloo) train exactly like one process on the same global batches.

One ``accelerate launch --multi_gpu --num_processes 2`` runs ``eksft train`` (tests/train/multiprocess_worker.py) on
a tiny random Llama saved to a folder, with ``use_cpu: true``: accelerate's ``--cpu`` starts a single process unless
it has an MPI hostfile, while ``--multi_gpu`` starts the processes through ``torch.distributed.run`` and
``use_cpu`` makes them a gloo group on the CPU. The same configs then train in this process on the whole global
batch, and the parameters after 3 SGD steps and the logged statistics must agree to fp32 reduction order.

The sampler is sequential (``train_sampling_strategy: sequential``) and accelerate shards batches in turn (rank r
gets batches r, r + 2, ...), so per-device batch b on 2 processes sees the samples of batch 2b on one. Cases:

- ``scope: sequence``, ``normalization: tokens`` (fused head): 2 processes x 1 sequence x 2 accumulation steps vs
  1 x 4 x 1: data parallelism and accumulation together (num_items_in_batch is summed over processes; the loss is
  multiplied by the process count because DDP averages gradients).
- ``scope: global`` (logits path) with ``tokens`` and ``mean``: 2 x 2 vs 1 x 4; one Top-K over both processes'
  targets equals the single-process Top-K over the whole batch, so the logged thresholds agree step by step.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from eksft.commands.train import config_from
from eksft.jobs.metrics import read_metrics
from eksft.models.tiny import save_tiny
from eksft.train import build_trainer
from tests.helpers import QUIET_RUN

from .conftest import arithmetic_records, write_jsonl

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "multiprocess_worker.py")
ROOT = os.path.dirname(os.path.dirname(HERE))
BASE = dict(
    model_name_or_path="model",
    train_file="train.jsonl",
    loss_type="eksft",
    rho=0.3,
    lambda_kl=0.5,
    max_steps=3,
    optim="sgd",
    learning_rate=0.5,
    max_grad_norm=0.0,
    train_sampling_strategy="sequential",
    max_length=64,
    seed=0,
    use_cpu=True,
    **QUIET_RUN,
)
#: name -> (options of both runs, one process, each of two processes); the global batch is 4 sequences in all.
CASES = {
    "sequence": (
        {"scope": "sequence", "normalization": "tokens"},
        {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 1},
        {"per_device_train_batch_size": 1, "gradient_accumulation_steps": 2},
    ),
    "global_tokens": (
        {"scope": "global", "normalization": "tokens"},
        {"per_device_train_batch_size": 4},
        {"per_device_train_batch_size": 2},
    ),
    "global_mean": (
        {"scope": "global", "normalization": "mean"},
        {"per_device_train_batch_size": 4},
        {"per_device_train_batch_size": 2},
    ),
}
#: Logged statistics that are means over all targets of the step, so equal however the step is split. Set means
#: (ce, *_term) and per-sequence threshold means are num_targets-weighted per micro-batch (metrics.py): compared only
#: where the split is the same (global scope, one micro-batch per process).
SPLIT_INVARIANT = (
    "loss",
    "num_targets",
    "masked_fraction",
    "entropy_masked_fraction",
    "kl_masked_fraction",
    "entropy_mean",
    "kl_mean",
)
STATS = (*SPLIT_INVARIANT, "ce", "entropy_term", "kl_term", "entropy_threshold", "kl_threshold", "iou_entropy_kl")


def flags(options: dict) -> list[str]:
    return [x for k, v in options.items() for x in (f"--{k}", str(v))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(root) -> None:
    """The model, data, configs and accelerate config of the launch, written under ``root``."""
    save_tiny(root / "model")
    write_jsonl(root / "train.jsonl", arithmetic_records(24))
    (root / "base.json").write_text(json.dumps(BASE))  # YAML is a superset of JSON: `eksft train base.json`
    # An explicit accelerate config, so a user's default one (`accelerate config`) cannot change the launch.
    (root / "accelerate.yaml").write_text(
        "compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_GPU\nnum_processes: 2\nnum_machines: 1\n"
        "machine_rank: 0\nmixed_precision: 'no'\ndynamo_backend: 'NO'\nuse_cpu: false\n"
    )
    runs = [
        ["train", "base.json", "--output_dir", f"two_{name}", *flags({**both, **two})]
        for name, (both, _, two) in CASES.items()
    ]
    (root / "runs.json").write_text(json.dumps(runs))


def launch(root) -> subprocess.CompletedProcess:
    """``accelerate launch`` of the worker on 2 processes in ``root`` (every case trained once)."""
    path = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "PYTHONPATH": path,
    }
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        "accelerate.yaml",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--main_process_port",
        str(free_port()),
        WORKER,
        "runs.json",
    ]
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The model, data and config on disk, and every case trained once by the 2-process launch."""
    root = tmp_path_factory.mktemp("multiprocess")
    prepare(root)
    proc = launch(root)
    assert proc.returncode == 0, f"2-process launch failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return root


def single_process(root, name: str):
    both, one, _ = CASES[name]
    cwd = os.getcwd()
    os.chdir(root)  # the config's relative paths
    try:
        cfg = config_from("base.json", {**both, **one, "output_dir": str(root / f"one_{name}")})
        trainer = build_trainer(cfg)
        trainer.train()
    finally:
        os.chdir(cwd)
    return trainer


def steps(output_dir) -> list[dict]:
    return [r for r in read_metrics(output_dir) if "train_runtime" not in r]


@pytest.mark.parametrize("name", list(CASES))
def test_two_processes_equal_one_process(workdir, name):
    trainer = single_process(workdir, name)
    assert trainer.loss_implementation == ("fused" if name == "sequence" else "logits")
    start = load_file(str(workdir / "model" / "model.safetensors"))
    two = load_file(str(workdir / f"two_{name}" / "model.safetensors"))
    one = {n: p.detach() for n, p in trainer.model.named_parameters()}
    assert one.keys() == two.keys()
    assert sum(not torch.equal(start[n], one[n]) for n in one) > len(one) // 2  # the steps did something
    for n in one:
        torch.testing.assert_close(two[n], one[n], rtol=1e-5, atol=1e-6, msg=n)

    logs_one, logs_two = steps(workdir / f"one_{name}"), steps(workdir / f"two_{name}")
    assert [r["step"] for r in logs_one] == [r["step"] for r in logs_two] == [1, 2, 3]
    for a, b in zip(logs_one, logs_two, strict=True):
        assert a["num_targets"] == b["num_targets"]  # summed over processes, each target once
        for k in SPLIT_INVARIANT if name == "sequence" else STATS:  # global: one Top-K over both processes
            assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-5), (a["step"], k)
    if name.startswith("global"):
        assert logs_two[-1]["kl_threshold"] > 0 and 0 < logs_two[-1]["masked_fraction"] < 1
    # the persistent-mask counts are summed over processes: the same listing as one process on the whole batch
    t_one, t_two = (json.loads((workdir / f"{w}_{name}" / "mask_targets.json").read_text()) for w in ("one", "two"))
    assert t_two["steps"] == t_one["steps"] == 3 and t_two["targets"] == t_one["targets"]
    counts = [
        [(r["token_id"], r["masked"], r["occurrences"], r["steps_all_masked"]) for r in t["tokens"]]
        for t in (t_one, t_two)
    ]
    assert counts[0] == counts[1]
    assert [r["final_prob"] for r in t_two["tokens"]] == pytest.approx(
        [r["final_prob"] for r in t_one["tokens"]], rel=1e-4
    )
