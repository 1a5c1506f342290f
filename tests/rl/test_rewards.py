"""The DAPO stage's rewards, data and config (CPU, no model, ~5 s): the math-verify accuracy reward on hand-written
completions (boxed right, boxed wrong, unboxed, truncated, chat format, LaTeX gold), TRL's soft overlong punishment
and its weight, the SFT/RL record split, gold answers and prompt formats, and config errors naming the field."""

from __future__ import annotations

import json
import os

import pytest

from eksft.rl import MathAccuracyReward, RLConfig, reward_functions
from eksft.rl.data import load_prompts, split_slice

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def rl_config(tmp_path, **kw):
    base = dict(
        output_dir=str(tmp_path / "o"),
        report_to=[],
        max_completion_length=16,
        overlong_buffer_len=4,
        num_generations=2,
        per_device_train_batch_size=2,
    )
    return RLConfig(**{**base, **kw})


@pytest.fixture(autouse=True)
def no_vllm(monkeypatch):
    """These tests expect HF generation by default; a GPU machine with vLLM installed would choose vLLM."""
    monkeypatch.setattr("eksft.rl.config.vllm_available", lambda: False)
    monkeypatch.setattr("eksft.rl.config.vllm_on_cpu", lambda: False)  # .venv-vllm: vLLM's CPU build is there


def test_default_overlong_buffer_follows_max_completion_length(tmp_path):
    cfg = RLConfig(output_dir=str(tmp_path / "o"), report_to=[])  # TRL's max_completion_length 512
    assert cfg.overlong_buffer_len == cfg.max_completion_length // 5 and cfg.reward_weights == [1.0, 1.0]


def test_accuracy_reward_on_hand_written_completions():
    reward = MathAccuracyReward()
    completions = [
        "3 + 4 = 7, so the answer is \\boxed{7}.",  # boxed, right
        "3 + 4 = 8, so the answer is \\boxed{8}.",  # boxed, wrong
        "3 + 4 = 7, so the answer is 7.",  # right number but not boxed: no answer
        "3 + 4 = 7, so the answer is \\boxed{7",  # truncated mid-box: no answer
        "First \\boxed{7} ... no, it is \\boxed{9}.",  # the last box counts
        "\\boxed{7.0}",  # math-verify equivalence
    ]
    assert reward(completions, answer=["7"] * 6) == [1.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    assert reward.__name__ == "accuracy"  # GRPOTrainer logs it as rewards/accuracy/mean


def test_accuracy_reward_chat_completions_and_latex_gold():
    reward = MathAccuracyReward()
    chat = [
        [{"role": "assistant", "content": "So \\boxed{\\frac{1}{2}}"}],
        [{"role": "assistant", "content": "So \\boxed{0.5}"}],
        [{"role": "assistant", "content": "So \\boxed{\\frac{1}{3}}"}],
    ]
    assert reward(chat, answer=["\\frac{1}{2}"] * 3) == [1.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="2 completions but 1 gold"):
        reward(["a", "b"], answer=["1"])


def test_overlong_punishment_and_weights(tmp_path):
    cfg = rl_config(tmp_path, max_completion_length=16, overlong_buffer_len=4, overlong_penalty_factor=0.5)
    accuracy, overlong = reward_functions(cfg)
    assert isinstance(accuracy, MathAccuracyReward) and cfg.reward_weights == [1.0, 0.5]
    # 0 up to 16 - 4 = 12 tokens, then linear to -1 at 16 (DAPO Eq. 13)
    assert overlong([[0] * 12, [0] * 14, [0] * 16]) == [0.0, -0.5, -1.0]
    off = rl_config(tmp_path, overlong_buffer_len=0)
    assert len(reward_functions(off)) == 1 and off.reward_weights == [1.0]


def test_dapo_defaults_and_prompt_batch(tmp_path):
    cfg = rl_config(tmp_path, num_generations=4, prompts_per_generation=3, per_device_train_batch_size=4)
    assert (cfg.loss_type, cfg.epsilon, cfg.epsilon_high, cfg.beta, cfg.temperature) == ("dapo", 0.2, 0.28, 0.0, 1.0)
    assert cfg.mask_truncated_completions and cfg.use_vllm is False  # no vLLM + GPU here: HF generate
    assert cfg.generation_batch_size == 12 and cfg.steps_per_generation == 3


@pytest.mark.parametrize(
    "values, match",
    [
        ({"overlong_buffer_len": 16}, "overlong_buffer_len"),
        ({"use_vllm": True}, "use_vllm"),
        ({"prompts_per_generation": 2, "generation_batch_size": 4}, "prompts_per_generation"),
        ({"reward_weights": [1.0]}, "reward_weights"),
        ({"answer_extraction": "first_number"}, "answer_extraction"),
        ({"skip_samples": -1}, "skip_samples"),
    ],
)
def test_invalid_fields_fail_naming_the_field(tmp_path, values, match):
    with pytest.raises(ValueError, match=rf"RLConfig\.{match}"):
        rl_config(tmp_path, **values)


def test_split_is_disjoint_and_synthetic_prompts_carry_gold(tmp_path):
    assert split_slice(0, 3) == slice(0, 3) and split_slice(3, None) == slice(3, None)
    sft = load_prompts(rl_config(tmp_path, train_file="synthetic:arithmetic-easy", max_samples=4))
    rl = load_prompts(rl_config(tmp_path, train_file="synthetic:arithmetic-easy", skip_samples=4, max_samples=6))
    both = load_prompts(rl_config(tmp_path, train_file="synthetic:arithmetic-easy", max_samples=10))
    assert len(sft) == 4 and len(rl) == 6
    assert list(sft["prompt"]) + list(rl["prompt"]) == list(
        both["prompt"]
    )  # the RL part is exactly the records after the SFT part
    assert not {json.dumps(p) for p in sft["prompt"]} & {json.dumps(p) for p in rl["prompt"]}
    first = rl[0]
    assert first["prompt"][0]["role"] == "user" and "\\boxed{}" in first["prompt"][0]["content"]
    assert first["answer"] == both[4]["answer"]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_file_formats_gold_fallback_and_errors(tmp_path):
    rows = [
        {"prompt": "1+1?", "completion": "It is \\boxed{2}."},  # gold from the solution's last box
        {"prompt": "2+2?", "answer": "4"},  # prompt-only record
        {"prompt": "3+3?", "completion": "\\boxed{5}", "answer": "6"},
    ]  # the answer column wins
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    ds = load_prompts(rl_config(tmp_path, train_file=path, instruction="Box it."))
    assert list(ds["answer"]) == ["2", "4", "6"]
    assert ds[0]["prompt"] == [{"role": "user", "content": "1+1?\n\nBox it."}]
    raw = load_prompts(rl_config(tmp_path, train_file=path, chat_template=False, skip_samples=1))
    assert list(raw["prompt"]) == ["2+2?", "3+3?"]

    msgs = write_jsonl(
        tmp_path / "m.jsonl",
        [
            {
                "messages": [
                    {"role": "system", "content": "S"},
                    {"role": "user", "content": "Q"},
                    {"role": "assistant", "content": "\\boxed{9}"},
                ]
            }
        ],
    )
    ds = load_prompts(rl_config(tmp_path, train_file=msgs))
    assert ds[0]["prompt"] == [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}]
    assert ds[0]["answer"] == "9"

    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "a", "answer": "1"}, {"prompt": "b", "completion": "no box"}])
    with pytest.raises(ValueError, match=r"bad\.jsonl line 2: no gold answer.*answer_column"):
        load_prompts(rl_config(tmp_path, train_file=bad))
    with pytest.raises(ValueError, match="skip_samples"):
        load_prompts(rl_config(tmp_path, train_file=path, skip_samples=3))
    with pytest.raises(ValueError, match="max_samples"):
        load_prompts(rl_config(tmp_path, train_file="synthetic:arithmetic-easy"))


@pytest.mark.parametrize("name", ["rl_demo_cpu.yaml", "paper/rl_qwen3_4b.yaml", "paper/rl_qwen3_8b.yaml"])
def test_shipped_rl_configs_parse(name, monkeypatch):
    from eksft.commands import rl as rl_cmd
    from eksft.config_io import load_yaml

    monkeypatch.chdir(ROOT)
    path = os.path.join("configs", name)
    values = load_yaml(path)
    cpu = {k: v for k, v in {"bf16": False, "deepspeed": None, "use_vllm": False}.items() if k in values}
    cfg = rl_cmd.config_from(path, cpu)
    assert (cfg.loss_type, cfg.epsilon_high, cfg.mask_truncated_completions) == ("dapo", 0.28, True)
    if name.startswith("paper"):
        # DAPO paper: lr 1e-6, 16 samples, prompt batch 512, 512 completions per update, 20480 = 16384 + 4096
        assert (cfg.learning_rate, cfg.num_generations, cfg.generation_batch_size) == (1e-6, 16, 512 * 16)
        assert cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * 8 == 32 * 16
        assert (cfg.max_completion_length, cfg.overlong_buffer_len, cfg.overlong_penalty_factor) == (20480, 4096, 1.0)
        assert (cfg.beta, cfg.temperature, cfg.epsilon) == (0.0, 1.0, 0.2)
        assert values["use_vllm"] is True and os.path.exists(values["deepspeed"])
