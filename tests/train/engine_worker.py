"""Worker of test_engines.py, started by ``accelerate launch`` on every process (DDP, DeepSpeed ZeRO-3 or FSDP2 on
CPU processes over gloo). Not a test module (pytest collects ``test_*.py`` only).

It runs every entry of the JSON list given, in order, so many runs share one launch (process start-up and imports
cost most of the time on 2 CPU cores):

- ``["train", ...]`` / ``["rl", ...]``: ``eksft.cpu_launch.main`` (the CLI's ``main`` after the CPU launch changes);
- ``{"copy": [SRC, DST]}``: process 0 copies folder SRC to DST (a run "killed" after the checkpoint SRC), then
  every process waits for it;
- ``{"env": {NAME: VALUE}}``: set environment variables for the runs after it (e.g. FSDP's state dict type).

What the test needs to see from inside the processes is written next to each run's output:

- ``engine-RANK.json``: the engine accelerate built (``distributed_type``), the lm head weight as each process holds
  it between steps (class, local element count, full element count), and how many times the fused head's gather
  (``eksft.models.head.gathered``) turned a sharded weight into the full one, for the policy's head and for
  the reference's;
- ``rounds-RANK.jsonl`` (``eksft rl``): one line per scored generation batch of dynamic sampling: the optimiser step
  and the has-variance flag of every process's groups.

``eksft rl`` runs with a scripted reward (``eksft.rl.run.reward_functions`` replaced): on process 0 every group's
first completion gets 1 and the rest 0 (reward variance), on process 1 only prompts containing "vary" do (all other
groups have none), so the two processes need different numbers of refills and must still draw the same rounds.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys

import torch

torch.set_num_threads(1)  # two processes on a shared 2-core machine

from eksft import cpu_launch  # noqa: E402

G = 4  # num_generations of the rl run


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_initialized() else 0


def _numel(t) -> tuple[str, int, int]:
    local = t.to_local() if hasattr(t, "to_local") else t
    full = getattr(t, "ds_numel", None) or t.numel()  # ZeRO-3 keeps a 0-element placeholder, ds_numel the size
    return type(t).__name__, int(local.numel()), int(full)


def probe_engines() -> None:
    from eksft.models import head
    from eksft.models.head import lm_head_parts
    from eksft.train import trainer

    counts = {"policy": 0, "reference": 0}
    original = head.gathered
    calls = [0]

    @contextlib.contextmanager
    def gathered(lm_head):  # the loss forward gathers the policy's head, then the reference's (or None)
        role = ("policy", "reference")[calls[0] % 2]
        calls[0] += 1
        before = None if lm_head is None else _numel(lm_head.weight)[1]  # ZeRO-3 gathers into the same Parameter
        with original(lm_head) as full:
            if lm_head is not None and full.weight.numel() > before:
                counts[role] += 1
            yield full

    head.gathered = gathered  # the patched forward looks it up in its module
    original_train = trainer.EKSFTTrainer.train

    def train(self, *args, **kwargs):
        counts.update(policy=0, reference=0)
        out = original_train(self, *args, **kwargs)
        weight = lm_head_parts(self.accelerator.unwrap_model(self.model)).weight
        info = {
            "distributed_type": str(self.accelerator.distributed_type).split(".")[-1],
            "lm_head": _numel(weight),
            "gathers": dict(counts),
            "implementation": self.loss_implementation,
        }
        with open(os.path.join(self.args.output_dir, f"engine-{_rank()}.json"), "w") as f:
            json.dump(info, f)
        return out

    trainer.EKSFTTrainer.train = train


class RankScriptedReward:
    __name__ = "scripted"

    def __call__(self, prompts, completions, **kw):
        texts = [p[-1]["content"] if isinstance(p, list) else p for p in prompts]
        everything = _rank() == 0
        return [float(i % G == 0 and (everything or "vary" in t)) for i, t in enumerate(texts)]


def probe_rl() -> None:
    from eksft.rl import run, trainer

    run.reward_functions = lambda cfg: [RankScriptedReward()]
    original = trainer.DAPOTrainer._score_groups

    def score_groups(self, rows):
        batch, flags = original(self, rows)
        with open(os.path.join(self.args.output_dir, f"rounds-{_rank()}.jsonl"), "a") as f:
            f.write(json.dumps({"step": self.state.global_step, "flags": flags}) + "\n")
        return batch, flags

    trainer.DAPOTrainer._score_groups = score_groups


def copy(src: str, dst: str) -> None:
    import torch.distributed as dist

    if _rank() == 0:
        shutil.copytree(src, dst)
    if dist.is_initialized():
        dist.barrier()


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as f:
        runs = json.load(f)
    probe_engines()
    if any(isinstance(r, list) and r[0] == "rl" for r in runs):
        probe_rl()
    for entry in runs:
        if isinstance(entry, dict):
            os.environ.update(entry.get("env", {}))
            if "copy" in entry:
                copy(*entry["copy"])
            continue
        rc = cpu_launch.main(entry)
        if rc:
            sys.exit(rc)
    # Both processes leave together and tear the gloo group down before interpreter exit (multiprocess_worker.py).
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    # Even so, torch's C++ teardown at interpreter exit aborted a rank once on a loaded 2-core machine, after every
    # result was written ("terminate called without an active exception", exit -6, CI 2026-12-07, FSDP2). The test
    # reads the results from files, so the worker ends here without the interpreter's teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
