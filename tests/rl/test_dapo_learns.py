"""DAPO learns: ``eksft rl``'s trainer (``build_rl_trainer`` + ``train``, TRL's GRPOTrainer with eksft's
DAPOTrainer) raises the mean reward of the tiny random Llama on a reward it can learn, with dynamic sampling off and
on. A wrong advantage sign, or refill rows left out of the loss, makes these tests fail (checked once on a broken
copy, issue 22).

The reward: 1 when the completion's first token is a digit, else 0; prompts whose text holds ``dead`` score 0
whatever is written (all-wrong groups: no advantage). What is measured is the policy's exact mean reward on the
learnable prompts, P(first completion token is a digit), read from its logits (no sampling noise). The random model
starts at 0.10 (10 of its 101 tokens, logits near uniform); the tests ask for 0.5 after 30 steps. Measured over
seeds 0-3 (one thread, lr 3e-2): dynamic sampling off, every prompt learnable: 0.86-1.00; on, 1 learnable prompt in
4 and one prompt per rollout batch: 0.95-0.99; the same mix with the filter off (the refills are all that carry the
signal there): 0.09-0.13, which is the contrast test below. About 20 s on one thread.
"""

from __future__ import annotations

import json

import pytest
import torch

from eksft.jobs.metrics import read_metrics
from eksft.models.tiny import tiny_tokenizer
from eksft.rl import build_rl_trainer

G = 4  # completions per prompt
START = 0.10  # the random policy's mean reward: 10 digit tokens of 101, near-uniform logits
THRESHOLD = 0.5  # after STEPS steps; measured 0.86-1.00 when DAPO works, 0.09-0.13 with no signal (docstring)
STEPS = 30


class FirstTokenDigit:
    """1.0 when the completion starts with a digit token, 0.0 otherwise and always on ``dead`` prompts."""

    __name__ = "first_digit"

    def __init__(self, digit_ids: set[int]):
        self.digit_ids = digit_ids

    def __call__(self, prompts, completions, completion_ids, **kw):
        texts = [p[-1]["content"] if isinstance(p, list) else p for p in prompts]
        return [
            float("dead" not in t and bool(ids) and ids[0] in self.digit_ids) for t, ids in zip(texts, completion_ids)
        ]


def digit_ids(tokenizer) -> set[int]:
    return set(tokenizer.convert_tokens_to_ids(list("0123456789")))


def mean_reward(trainer) -> float:
    """The policy's exact mean reward over the learnable prompts of its dataset: P(first token is a digit) at
    temperature 1, as TRL samples (chat template and generation prompt applied as TRL applies them)."""
    tok, model = trainer.processing_class, trainer.model
    digits = sorted(digit_ids(tok))
    prompts = [r["prompt"] for r in trainer.train_dataset if "dead" not in r["prompt"][-1]["content"]]
    values = []
    with torch.no_grad():
        for p in prompts:
            ids = tok.apply_chat_template(p, add_generation_prompt=True, return_dict=True, return_tensors="pt")
            probs = model(input_ids=ids["input_ids"].to(model.device)).logits[0, -1].float().softmax(-1)
            values.append(float(probs[digits].sum()))
    return sum(values) / len(values)


@pytest.fixture
def learn_run(make_rl_config, tmp_path):
    """``learn_run(kinds, **config)`` -> (mean reward before, after, trainer) of STEPS DAPO steps on prompts of
    ``kinds`` ("learn" or "dead")."""

    def run(kinds, **kw):
        path = tmp_path / "prompts.jsonl"
        path.write_text(
            "".join(
                json.dumps({"prompt": f"{k}-{i}: write {i}.", "answer": str(i)}) + "\n" for i, k in enumerate(kinds)
            )
        )
        base = dict(
            train_file=str(path),
            max_samples=None,
            max_steps=STEPS,
            learning_rate=3e-2,
            num_generations=G,
            max_completion_length=2,  # the reward reads the first token
            overlong_buffer_len=0,
            mask_truncated_completions=False,  # a random model rarely ends within 2 tokens
        )
        cfg = make_rl_config(**{**base, **kw})
        trainer = build_rl_trainer(cfg, reward_funcs=[FirstTokenDigit(digit_ids(tiny_tokenizer()))])
        before = mean_reward(trainer)
        trainer.train()
        return before, mean_reward(trainer), trainer

    return run


def test_dapo_learns_without_dynamic_sampling(learn_run):
    before, after, trainer = learn_run(
        ["learn"] * 8, dynamic_sampling=False, prompts_per_generation=2, per_device_train_batch_size=2 * G
    )
    assert before == pytest.approx(START, abs=0.03)
    assert after > THRESHOLD, (before, after)
    rewards = [r["reward"] for r in read_metrics(trainer.args.output_dir) if "reward" in r]
    assert sum(rewards[-5:]) / 5 > THRESHOLD > sum(rewards[:5]) / 5  # the sampled rewards TRL logs agree


def test_dapo_learns_with_dynamic_sampling(learn_run):
    """1 learnable prompt in 4, one prompt per rollout batch: the filter drops the dead groups and refills until a
    group with reward variance is drawn, so nearly every step trains on the learnable prompt."""
    before, after, trainer = learn_run(
        ["dead", "dead", "dead", "learn"] * 2,
        dynamic_sampling=True,
        prompts_per_generation=1,
        per_device_train_batch_size=G,
    )
    assert before == pytest.approx(START, abs=0.03)
    assert after > THRESHOLD, (before, after)
    rows = [r for r in read_metrics(trainer.args.output_dir) if "dynamic_sampling/groups_kept" in r]
    assert sum(r["dynamic_sampling/generation_batches"] > 1 for r in rows) > STEPS // 2  # refills happened


def test_same_mix_without_the_filter_learns_nothing(learn_run):
    """The contrast that makes the test above mean something: without refills, the same steps on the same prompts
    stay near the start (most rollout batches hold only a dead prompt)."""
    before, after, _ = learn_run(
        ["dead", "dead", "dead", "learn"] * 2,
        dynamic_sampling=False,
        prompts_per_generation=1,
        per_device_train_batch_size=G,
    )
    assert after < THRESHOLD - 0.2, (before, after)
