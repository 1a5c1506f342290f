"""DeepSpeed ZeRO-3 and FSDP2 really run: 2 CPU processes over gloo each, against 2-process DDP on the same batches.

Three ``accelerate launch`` runs of tests/train/engine_worker.py (one per engine: DDP, then
configs/accelerate/zero3_cpu.yaml and configs/accelerate/fsdp2_cpu.yaml through ``eksft.cpu_launch``), each
training every case below once on a tiny random Llama saved to a folder, so the launches are shared by all
assertions. Needs DeepSpeed (the ``deepspeed`` extra, part of ``dev``); no GPU. Checks:

- the engine is the one asked for and shards the lm head (a 0-element ZeRO-3 placeholder, an FSDP2 ``DTensor``
  holding about half the rows), and the fused head gathered the reference's head once per step (never per chunk;
  the policy's own head is already whole inside its forward with both engines);
- loss and gradient norm at steps 1 and 2 equal DDP's within 1e-5: ``sft`` and ``eksft`` on the fused path, ``eksft``
  on the logits path, ``asft`` (a reference model) on the logits path, and a batch where one process has ~5x the
  other's valid targets (a head that issued one collective per chunk would hang there: the launch timeout fails it);
- the saved model is ordinary safetensors that ``eksft eval``'s loader reads, equal to DDP's;
- a run stopped after its sharded checkpoint (copied away after step 2) resumes with ``--resume_from_checkpoint
  latest`` and logs the uninterrupted run's losses at steps 3 and 4;
- 2-process DDP ``eksft rl`` with dynamic sampling where one process's groups have reward variance and the other's
  mostly not: both processes draw the same generation batches (one collective each) and the steps finish.

Every launch has a timeout (process group killed), so a hang is a failure, not a stuck suite.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from eksft.jobs.metrics import read_metrics
from eksft.models.loading import load_causal_lm
from eksft.models.tiny import save_tiny
from tests.helpers import QUIET_RUN

from .conftest import arithmetic_records, write_jsonl
from .test_multiprocess import ROOT, flags, free_port

pytest.importorskip("deepspeed")

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "engine_worker.py")
CONFIGS = os.path.join(ROOT, "configs", "accelerate")
LAUNCH_TIMEOUT = 420  # seconds per launch; about 60-90 s each on an idle 2-core machine

BASE = dict(
    model_name_or_path="model",
    train_file="train.jsonl",
    rho=0.3,
    lambda_kl=0.5,
    max_steps=2,
    per_device_train_batch_size=2,
    optim="sgd",
    learning_rate=0.5,
    max_grad_norm=1.0,
    train_sampling_strategy="sequential",
    max_length=64,
    seed=0,
    use_cpu=True,
    **QUIET_RUN,
)
#: name -> options over BASE. Compared with DDP step by step.
CASES = {
    "sft": {"loss_type": "sft"},
    "eksft": {"loss_type": "eksft"},
    "eksft_logits": {"loss_type": "eksft", "loss_implementation": "logits"},
    "asft_logits": {"loss_type": "asft", "loss_implementation": "logits"},
    # process 0 gets the short record, process 1 the long one (sequential sampler, one record each)
    "unbalanced": {
        "loss_type": "eksft",
        "train_file": "unbalanced.jsonl",
        "per_device_train_batch_size": 1,
        "max_length": 512,
    },
}
IMPLEMENTATION = {
    "sft": "fused",
    "eksft": "fused",
    "eksft_logits": "logits",
    "asft_logits": "logits",
    "unbalanced": "fused",
}
# AdamW: a checkpoint with optimiser state (torch cannot load SGD's empty state into FSDP2's full optimiser dict)
RESUME = {
    **{"loss_type": "eksft", "max_steps": 4, "save_strategy": "steps", "save_steps": 2},
    **{"optim": "adamw_torch", "learning_rate": 0.01},
}
RL = dict(
    model_name_or_path="model",
    train_file="prompts.jsonl",
    max_steps=3,
    num_generations=4,
    prompts_per_generation=2,  # one group per process
    per_device_train_batch_size=4,
    max_completion_length=8,
    overlong_buffer_len=0,
    max_generation_batches=6,
    dynamic_sampling=True,
    learning_rate=1e-3,
    seed=0,
    use_cpu=True,
    **QUIET_RUN,
)
ENGINES = {"zero3": ("zero3_cpu.yaml", "DEEPSPEED"), "fsdp2": ("fsdp2_cpu.yaml", "FSDP")}


def unbalanced_records(n: int = 8) -> list[dict]:
    """Alternating completions of 64 and 320 targets (one character is one token, plus the end of turn): more than
    two chunks of the fused head (128 targets each) on one process, one on the other."""
    words = "seven plus five is twelve " * 13
    return [{"prompt": f"Question {i}?", "completion": words[: 63 if i % 2 == 0 else 319]} for i in range(n)]


def rl_prompts() -> list[dict]:
    kinds = ["same", "same", "same", "vary"] * 4
    return [{"prompt": f"{kind}-{k}: say {k}.", "answer": str(k)} for k, kind in enumerate(kinds)]


def runs(engine: str) -> list:
    out = [["train", "base.json", "--output_dir", f"{engine}_{name}", *flags(o)] for name, o in CASES.items()]
    if engine != "ddp":
        full, resumed = f"{engine}_resume_full", f"{engine}_resumed"
        if engine == "fsdp2":  # sharded checkpoints (the shipped config saves full ones for ordinary safetensors)
            out.append({"env": {"FSDP_STATE_DICT_TYPE": "SHARDED_STATE_DICT"}})
        out += [
            ["train", "base.json", "--output_dir", full, *flags(RESUME)],
            {"copy": [f"{full}/checkpoint-2", f"{resumed}/checkpoint-2"]},
            ["train", "base.json", "--output_dir", resumed, "--resume_from_checkpoint", "latest", *flags(RESUME)],
        ]
    else:
        out.append(["rl", "rl.json", "--output_dir", "ddp_rl"])
    return out


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("engines")
    save_tiny(root / "model")
    write_jsonl(root / "train.jsonl", arithmetic_records(24))
    write_jsonl(root / "unbalanced.jsonl", unbalanced_records())
    write_jsonl(root / "prompts.jsonl", rl_prompts())
    (root / "base.json").write_text(json.dumps(BASE))
    (root / "rl.json").write_text(json.dumps(RL))
    (root / "ddp.yaml").write_text(
        "compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_GPU\nnum_processes: 2\nnum_machines: 1\n"
        "machine_rank: 0\nmixed_precision: 'no'\ndynamo_backend: 'NO'\nuse_cpu: false\n"
    )
    return root


def launch(root, engine: str) -> None:
    """``accelerate launch`` of the worker on 2 processes; the whole process group is killed on timeout."""
    config = str(root / "ddp.yaml") if engine == "ddp" else os.path.join(CONFIGS, ENGINES[engine][0])
    (root / f"{engine}_runs.json").write_text(json.dumps(runs(engine)))
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])),
    }
    extra = {
        "ddp": ["--multi_gpu"],
        "zero3": ["--deepspeed_config_file", os.path.join(ROOT, "configs", "ds_zero3.json")],
    }
    extra = extra.get(engine, [])
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config, *extra]
    cmd += ["--num_processes", "2", "--main_process_port", str(free_port()), WORKER, f"{engine}_runs.json"]
    log = root / f"{engine}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=LAUNCH_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.fail(f"{engine} launch did not finish in {LAUNCH_TIMEOUT} s (a hang?):\n{log.read_text()[-4000:]}")
    assert rc == 0, f"{engine} launch failed:\n{log.read_text()[-6000:]}"


@pytest.fixture(scope="module")
def ddp(root):
    launch(root, "ddp")
    return root


@pytest.fixture(scope="module", params=list(ENGINES))
def engine(request, root, ddp):
    launch(root, request.param)
    return request.param


def steps(output_dir) -> list[dict]:
    return [r for r in read_metrics(output_dir) if "loss" in r and "train_runtime" not in r]


def probe(output_dir) -> list[dict]:
    return [json.loads((output_dir / f"engine-{rank}.json").read_text()) for rank in (0, 1)]


@pytest.mark.timeout(2 * LAUNCH_TIMEOUT + 60)
def test_engine_matches_ddp(root, engine):
    for name in CASES:
        info = probe(root / f"{engine}_{name}")
        assert [i["distributed_type"] for i in info] == [ENGINES[engine][1]] * 2, name
        assert [i["distributed_type"] for i in probe(root / f"ddp_{name}")] == ["MULTI_CPU"] * 2
        # the lm head is sharded between steps: a 0-element placeholder (ZeRO-3), about half the rows (FSDP2)
        for i in info:
            kind, local, full = i["lm_head"]
            assert (local == 0 if engine == "zero3" else 0 < local < full) and full > 0, (name, i)
        ours, ddp_logs = steps(root / f"{engine}_{name}"), steps(root / f"ddp_{name}")
        assert [i["implementation"] for i in info] == [IMPLEMENTATION[name]] * 2, name
        if IMPLEMENTATION[name] == "fused":
            # The reference's head is gathered once per step, never once per chunk of targets. The policy's is
            # already whole inside its own forward with these engines (the engine gathered the root's parameters),
            # so the gather there is a no-op or at most once per step.
            reference = 0 if CASES[name]["loss_type"] == "sft" else len(ours)
            assert [i["gathers"]["reference"] for i in info] == [reference] * 2, (name, info)
            assert all(i["gathers"]["policy"] in (0, len(ours)) for i in info), (name, info)
        assert [r["step"] for r in ours] == [r["step"] for r in ddp_logs] == list(range(1, len(ours) + 1))
        for a, b in zip(ours, ddp_logs, strict=True):
            assert a["num_targets"] == b["num_targets"], (name, a["step"])
            for key in ("loss", "grad_norm"):
                assert a[key] == pytest.approx(b[key], abs=1e-5, rel=0), (name, a["step"], key)
    assert steps(root / "ddp_unbalanced")[0]["num_targets"] == 64 + 320


@pytest.mark.timeout(2 * LAUNCH_TIMEOUT + 60)
def test_saved_model_is_plain_safetensors(root, engine):
    folder = root / f"{engine}_eksft"
    ours = load_file(str(folder / "model.safetensors"))
    ddp = load_file(str(root / "ddp_eksft" / "model.safetensors"))
    assert ours.keys() == ddp.keys()
    for name in ddp:
        torch.testing.assert_close(ours[name], ddp[name], rtol=0, atol=1e-5, msg=name)
    model = load_causal_lm(str(folder))  # what `eksft eval` loads
    assert not any(p.numel() == 0 for p in model.parameters())


@pytest.mark.timeout(2 * LAUNCH_TIMEOUT + 60)
def test_resume_from_sharded_checkpoint(root, engine):
    checkpoint = root / f"{engine}_resume_full" / "checkpoint-2"
    names = os.listdir(checkpoint)
    if engine == "zero3":
        assert any(n.startswith("global_step") for n in names), names  # DeepSpeed's per-process shards
    else:
        assert "pytorch_model_fsdp_0" in names, names  # torch.distributed.checkpoint shards
    full, resumed = steps(root / f"{engine}_resume_full"), steps(root / f"{engine}_resumed")
    assert [r["step"] for r in full] == [1, 2, 3, 4] and [r["step"] for r in resumed] == [3, 4]
    for a, b in zip(full[2:], resumed, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-6, rel=0), a["step"]
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], abs=1e-5, rel=0), a["step"]


@pytest.mark.timeout(LAUNCH_TIMEOUT + 60)
def test_rl_dynamic_sampling_ranks_draw_the_same_rounds(ddp):
    out = ddp / "ddp_rl"
    rounds = [[json.loads(line) for line in (out / f"rounds-{rank}.jsonl").read_text().splitlines()] for rank in (0, 1)]
    assert rounds[0] == rounds[1]  # same steps, same rounds, the same flags of every process's groups
    per_step = {}
    for r in rounds[0]:
        per_step.setdefault(r["step"], []).append(r["flags"])
    assert sorted(per_step) == [0, 1, 2]
    # process 0's group always varies; process 1 needed refills at some step, so the processes differed
    assert all(flags[0] for step in per_step.values() for flags in step)
    assert any(len(step) > 1 and step[0] == [True, False] for step in per_step.values()), per_step
    logged = [r for r in read_metrics(out) if "dynamic_sampling/generation_batches" in r]
    assert [r["step"] for r in logged] == [1, 2, 3]
    assert [r["dynamic_sampling/generation_batches"] for r in logged] == [len(per_step[s]) for s in (0, 1, 2)]
    assert all(r["dynamic_sampling/groups_kept"] == 2 for r in logged)
