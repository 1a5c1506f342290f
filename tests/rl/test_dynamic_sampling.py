"""DAPO dynamic sampling (eksft/rl/dynamic_sampling.py, eksft/rl/trainer.py) on the tiny random Llama with a
scripted reward: prompts "same-k" give every completion the same reward, prompts "vary-k" reward only the first
completion of each group. Asserts: all-same groups are dropped and refilled until every kept group has variance;
with the filter off (or nothing to filter) the trainer is TRL's GRPOTrainer step for step; a resumed run keeps the
uninterrupted trajectory; the cap warns naming max_generation_batches and keeps the batch shape; the selection
rules hold for several processes."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from eksft.jobs.metrics import read_metrics
from eksft.rl import RLConfig, build_rl_trainer
from eksft.rl.dynamic_sampling import (
    choose_groups,
    groups_with_variance,
    join_batches,
    kept_per_process,
    needs_more,
    refill_indices,
)
from tests.helpers import StopAt

G = 4  # completions per prompt
DS = "dynamic_sampling/"


class ScriptedReward:
    """'same' prompts: 0.0 for every completion; 'vary' prompts: 1.0 for the first completion of each group (rows are
    group-major), 0.0 for the rest. Records the prompts of every call."""

    __name__ = "scripted"

    def __init__(self, everything_varies=False):
        self.everything_varies = everything_varies
        self.calls: list[list[str]] = []

    def __call__(self, prompts, completions, **kw):
        texts = [p[-1]["content"] if isinstance(p, list) else p for p in prompts]
        self.calls.append(texts)
        return [float(i % G == 0 and (self.everything_varies or "vary" in t)) for i, t in enumerate(texts)]


def write_prompts(path, kinds):
    with open(path, "w") as f:
        for k, kind in enumerate(kinds):
            f.write(json.dumps({"prompt": f"{kind}-{k}: say {k}.", "answer": str(k)}) + "\n")
    return str(path)


@pytest.fixture
def ds_config(make_rl_config, tmp_path):
    """2 prompts x 4 completions per rollout batch; 3 of every 4 prompts are 'same', so refills are needed."""
    train = write_prompts(tmp_path / "p.jsonl", ["same", "same", "same", "vary"] * 4)

    def make(**kw):
        base = dict(
            train_file=train,
            max_samples=None,
            overlong_buffer_len=0,
            max_completion_length=8,
            prompts_per_generation=2,
            per_device_train_batch_size=8,
            max_generation_batches=10,
        )
        return make_rl_config(**{**base, **kw})

    return make


def capture_batches(trainer):
    """Wrap the scoring step to keep every batch handed to TRL's training loop (before its shuffle)."""
    seen = []
    original = trainer._generate_and_score_completions

    def wrapped(inputs):
        out = original(inputs)
        seen.append(out)
        return out

    trainer._generate_and_score_completions = wrapped
    return seen


def test_all_same_groups_are_refilled_until_every_kept_group_varies(ds_config):
    cfg = ds_config(max_steps=3)
    reward = ScriptedReward()
    trainer = build_rl_trainer(cfg, reward_funcs=[reward])
    batches = capture_batches(trainer)
    trainer.train()
    assert len(batches) == 3
    for batch in batches:
        assert batch["completion_ids"].shape[0] == 2 * G and batch["advantages"].shape == (2 * G,)
        assert batch["prompt_ids"].shape[0] == batch["prompt_mask"].shape[0] == 2 * G
        # every kept group has reward variance: its advantages are not all zero
        assert (batch["advantages"].view(2, G).abs().sum(dim=1) > 0).all()
        assert batch["num_items_in_batch"] == batch["completion_mask"].sum()
    rows = [r for r in read_metrics(cfg.output_dir) if "reward" in r]
    assert [r["step"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert r[DS + "groups_kept"] == 2 and r[DS + "groups_filled"] == 0
        assert r[DS + "groups_drawn"] == 2 * r[DS + "generation_batches"]
        assert r[DS + "groups_with_variance"] >= 2
    assert sum(r[DS + "generation_batches"] for r in rows) > 3  # at least one step needed a refill
    # refills drew prompts not already drawn at that step: no prompt twice in one step's calls
    calls = iter(reward.calls)
    for r in rows:
        step_prompts = [p for _ in range(int(r[DS + "generation_batches"])) for p in next(calls)[::G]]
        assert len(step_prompts) == len(set(step_prompts))


@pytest.mark.parametrize("case", ["filter_off", "nothing_to_filter"])
def test_matches_trls_grpo_step(ds_config, case):
    """Off (or on with every group varied, so nothing is dropped) = TRL's GRPOTrainer, number for number."""
    from trl import GRPOTrainer

    from eksft.jobs.policy import policy_and_tokenizer
    from eksft.rl.data import load_prompts

    kw = dict(max_steps=2, mask_truncated_completions=False, dynamic_sampling=case == "nothing_to_filter")
    ours = build_rl_trainer(ds_config(**kw), reward_funcs=[ScriptedReward(everything_varies=case != "filter_off")])
    ours.train()
    cfg = ds_config(**{**kw, "output_dir": ours.args.output_dir + "_trl"})
    model, tok = policy_and_tokenizer(cfg)
    tok.padding_side = "left"
    trl = GRPOTrainer(
        model,
        reward_funcs=[ScriptedReward(everything_varies=case != "filter_off")],
        args=cfg,
        train_dataset=load_prompts(cfg),
        processing_class=tok,
    )
    trl.train()
    mine = [r for r in ours.state.log_history if "loss" in r and "reward" in r]
    theirs = [r for r in trl.state.log_history if "loss" in r and "reward" in r]
    assert len(mine) == len(theirs) == 2
    for a, b in zip(mine, theirs):
        for key in ("loss", "reward", "reward_std", "grad_norm", "completions/mean_length", "entropy"):
            assert a[key] == b[key], key
        assert (DS + "groups_kept" in a) == (case == "nothing_to_filter")
    for p, q in zip(ours.model.parameters(), trl.model.parameters()):
        assert torch.equal(p, q)


def test_resume_keeps_the_trajectory(ds_config, tmp_path):
    kw = dict(output_dir=str(tmp_path / "interrupted"), max_steps=4, save_strategy="steps", save_steps=2)
    first = build_rl_trainer(ds_config(**kw), reward_funcs=[ScriptedReward()])
    first.add_callback(StopAt(2))
    first.train()
    second = build_rl_trainer(ds_config(**kw), reward_funcs=[ScriptedReward()])
    second.train(resume_from_checkpoint=f"{kw['output_dir']}/checkpoint-2")
    full = build_rl_trainer(ds_config(**{**kw, "output_dir": str(tmp_path / "full")}), reward_funcs=[ScriptedReward()])
    full.train()
    got = {r["step"]: r for r in read_metrics(kw["output_dir"]) if "reward" in r}
    want = {r["step"]: r for r in read_metrics(full.args.output_dir) if "reward" in r}
    assert sorted(got) == sorted(want) == [1, 2, 3, 4]
    assert sum(want[s][DS + "generation_batches"] for s in (3, 4)) > 2  # the resumed steps refilled
    for step in (3, 4):
        for key in (
            "loss",
            "reward",
            "completions/mean_length",
            DS + "generation_batches",
            DS + "groups_drawn",
            DS + "groups_with_variance",
        ):
            assert got[step][key] == pytest.approx(want[step][key], rel=1e-4, abs=1e-6), (step, key)


def test_cap_warns_naming_the_field_and_keeps_the_batch_shape(ds_config, caplog):
    cfg = ds_config(max_steps=1, max_generation_batches=2)
    trainer = build_rl_trainer(cfg, reward_funcs=[lambda prompts, completions, **kw: [0.0] * len(prompts)])
    batches = capture_batches(trainer)
    with caplog.at_level(logging.WARNING, logger="eksft.rl.trainer"):
        trainer.train()
    assert any("max_generation_batches=2" in m and "RLConfig.max_generation_batches" in m for m in caplog.messages)
    (row,) = [r for r in read_metrics(cfg.output_dir) if "reward" in r]
    assert (
        row[DS + "generation_batches"],
        row[DS + "groups_drawn"],
        row[DS + "groups_kept"],
        row[DS + "groups_filled"],
    ) == (2, 4, 0, 2)
    assert batches[0]["completion_ids"].shape[0] == 2 * G and not batches[0]["advantages"].any()


def test_config_fields():
    assert RLConfig(output_dir="o", report_to=[]).dynamic_sampling is True
    with pytest.raises(ValueError, match="max_generation_batches"):
        RLConfig(output_dir="o", report_to=[], max_generation_batches=0)
    with pytest.raises(ValueError, match="dynamic_sampling_metric"):
        RLConfig(output_dir="o", report_to=[], dynamic_sampling_metric="acc")


# ------------------------------------------------------------------------------------------------ pure selection rules


def test_groups_with_variance():
    r = torch.tensor([0.0, 0, 0, 0, 1, 0, 0, 0, float("nan"), 1, 1, 1, float("nan"), float("nan"), float("nan"), 2])
    assert groups_with_variance(r, 4) == [False, True, False, False]


def test_selection_per_process():
    # 2 processes x 2 groups each; round 0: process 0 has one good group, process 1 none
    flags = [[True, False, False, False]]
    assert kept_per_process(flags, 2, 2) == [1, 0] and needs_more(flags, 2, 2)
    flags.append([False, True, True, True])  # round 1: process 0 gets one more, process 1 two
    assert kept_per_process(flags, 2, 2) == [2, 2] and not needs_more(flags, 2, 2)
    assert choose_groups(flags, 2, 0) == [(0, 0), (1, 1)]
    assert choose_groups(flags, 2, 1) == [(1, 0), (1, 1)]
    # the cap: process 1 is short and fills with its zero-variance groups in drawing order
    short = [[True, True, False, False], [False, False, False, True]]
    assert choose_groups(short, 2, 1) == [(1, 1), (0, 0)]


def test_refill_draws_are_seeded_by_step_and_skip_seen_prompts():
    keys = [f"p{i % 5}" for i in range(10)]  # 5 distinct prompts, each twice

    def draw(step, seen, n):
        it = refill_indices(len(keys), 0, step, seen, keys.__getitem__)
        return [next(it) for _ in range(n)]

    a, b = draw(3, {"p0"}, 4), draw(3, {"p0"}, 4)
    assert a == b and draw(4, {"p0"}, 4) != a  # deterministic per (seed, step), differs between steps
    assert {keys[i] for i in a} == {"p1", "p2", "p3", "p4"}  # all distinct, none already seen
    assert len(draw(3, {"p0"}, 7)) == 7  # then prompts repeat rather than stop


def test_join_pads_prompts_left_and_completions_right():
    def batch(p, c, adv):
        return {
            "prompt_ids": torch.full((2, p), 7),
            "prompt_mask": torch.ones(2, p, dtype=torch.long),
            "completion_ids": torch.full((2, c), 8),
            "completion_mask": torch.ones(2, c, dtype=torch.long),
            "advantages": torch.tensor(adv),
            "num_items_in_batch": torch.tensor(2 * c),
        }

    out = join_batches([batch(1, 3, [1.0, -1.0]), batch(2, 1, [0.5, -0.5])], [(1, 0), (0, 0)], 2, 0, lambda n: n)
    assert out["prompt_ids"].tolist() == [[0, 7], [0, 7], [7, 7], [7, 7]]
    assert out["prompt_mask"].tolist() == [[0, 1], [0, 1], [1, 1], [1, 1]]
    assert out["completion_ids"].tolist() == [[8, 8, 8], [8, 8, 8], [8, 0, 0], [8, 0, 0]]
    assert out["advantages"].tolist() == [1.0, -1.0, 0.5, -0.5] and int(out["num_items_in_batch"]) == 8
    with pytest.raises(NotImplementedError, match="dynamic_sampling: false"):
        join_batches([{**batch(1, 1, [0.0, 0.0]), "pixel_values": torch.zeros(2)}], [(0, 0)], 2, 0, lambda n: n)
