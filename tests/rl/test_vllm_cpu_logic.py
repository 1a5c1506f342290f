"""eksft/rl/vllm_cpu.py and the vLLM CPU settings without vLLM (stand-ins), so the default run covers them: the CPU
class is swapped in only on vLLM's CPU platform in colocate mode (never with CUDA), it starts the engine eager in
the policy's dtype and syncs weights through the worker's ``reload_weights``; ``RLConfig`` accepts ``use_vllm`` on
vLLM's CPU build in colocate mode only; the CPU environment defaults never override the user's. The real engine runs
in tests/rl/test_vllm_rollouts.py (``make test-vllm``)."""

from __future__ import annotations

from types import SimpleNamespace as NS

import pytest
import torch
import trl.generation.vllm_generation as vg
import trl.trainer.grpo_trainer as grpo

from eksft.eval.sampling import CPU_KVCACHE_GIB, cpu_id_list, vllm_cpu_env
from eksft.rl import RLConfig, vllm_cpu

VARS = ("VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_OMP_THREADS_BIND")


@pytest.fixture
def clean_env(monkeypatch):
    for name in VARS:  # setenv first so that the teardown removes what the code under test sets
        monkeypatch.setenv(name, "x")
        monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture
def on_vllm_cpu(clean_env):
    clean_env.setattr(vllm_cpu, "vllm_on_cpu", lambda: True)
    clean_env.setattr(torch.cuda, "is_available", lambda: False)
    return clean_env


def args(**kw):
    return NS(**{"use_vllm": True, "vllm_mode": "colocate", **kw})


def test_cpu_class_only_on_vllm_cpu_colocate(on_vllm_cpu):
    original = grpo.VLLMGeneration
    with vllm_cpu.cpu_vllm_generation(args()):
        swapped = grpo.VLLMGeneration
    assert swapped is not original and issubclass(swapped, original) and grpo.VLLMGeneration is original
    for other in (args(use_vllm=False), args(vllm_mode="server")):
        with vllm_cpu.cpu_vllm_generation(other):
            assert grpo.VLLMGeneration is original
    on_vllm_cpu.setattr(torch.cuda, "is_available", lambda: True)  # a GPU: TRL's own path, untouched
    with vllm_cpu.cpu_vllm_generation(args()):
        assert grpo.VLLMGeneration is original
    assert not vllm_cpu.cpu_colocate(args())


def test_cpu_class_starts_eager_in_policy_dtype_and_syncs_by_reload(on_vllm_cpu):
    made, calls = {}, []
    fake_llm = lambda **kw: made.update(kw) or "engine"  # noqa: E731
    on_vllm_cpu.setattr(vg, "LLM", fake_llm, raising=False)
    on_vllm_cpu.setattr(vg.VLLMGeneration, "_init_vllm", lambda self: setattr(self, "llm", vg.LLM(model="m", seed=0)))
    cls = vllm_cpu._generation_class()
    gen = cls.__new__(cls)  # TRL's __init__ needs an accelerator; only the two overridden methods are under test
    gen.model = NS(dtype=torch.float32)
    gen._init_vllm()
    assert made == {"model": "m", "seed": 0, "enforce_eager": True, "dtype": torch.float32}
    assert gen.llm == "engine" and vg.LLM is fake_llm  # TRL's module is restored after the engine start

    params = [("model.embed_tokens.weight", torch.ones(2)), ("lm_head.weight", torch.zeros(2))]
    gen._iter_named_params = lambda: iter(params)
    gen.llm = NS(
        collective_rpc=lambda method, kwargs: calls.append((method, list(kwargs["weights_iterator"]), kwargs)),
        reset_prefix_cache=lambda: calls.append("reset"),
    )
    gen.sync_weights()
    (method, weights, kwargs), reset = calls
    assert method == "reload_weights" and kwargs["is_checkpoint_format"] is True and reset == "reset"
    assert [n for n, _ in weights] == [n for n, _ in params]


def test_rl_config_accepts_vllm_cpu_in_colocate_only(monkeypatch, tmp_path):
    monkeypatch.setattr("eksft.rl.config.vllm_available", lambda: False)
    monkeypatch.setattr("eksft.rl.config.vllm_on_cpu", lambda: True)
    cfg = RLConfig(output_dir=str(tmp_path / "a"), report_to=[], use_vllm=True)
    assert cfg.use_vllm and cfg.vllm_mode == "colocate"
    with pytest.raises(ValueError, match=r"RLConfig\.vllm_mode: 'server' needs a CUDA GPU"):
        RLConfig(output_dir=str(tmp_path / "b"), report_to=[], use_vllm=True, vllm_mode="server")
    assert RLConfig(output_dir=str(tmp_path / "c"), report_to=[]).use_vllm is False  # unset: vLLM only with a GPU
    monkeypatch.setattr("eksft.rl.config.vllm_on_cpu", lambda: False)
    with pytest.raises(ValueError, match=r"RLConfig\.use_vllm: true needs .*vllm-cpu"):
        RLConfig(output_dir=str(tmp_path / "d"), report_to=[], use_vllm=True)


def test_cpu_env_defaults_yield_to_the_user(clean_env):
    import os

    assert cpu_id_list({0, 1, 2, 5}) == "0-2,5" and cpu_id_list([3]) == "3" and cpu_id_list([0, 1]) == "0-1"
    vllm_cpu_env()
    assert os.environ["VLLM_CPU_KVCACHE_SPACE"] == str(CPU_KVCACHE_GIB)
    assert os.environ["VLLM_CPU_OMP_THREADS_BIND"] == cpu_id_list(os.sched_getaffinity(0))
    clean_env.setenv("VLLM_CPU_OMP_THREADS_BIND", "auto")
    clean_env.setenv("VLLM_CPU_KVCACHE_SPACE", "8")
    vllm_cpu_env()
    assert (os.environ["VLLM_CPU_OMP_THREADS_BIND"], os.environ["VLLM_CPU_KVCACHE_SPACE"]) == ("auto", "8")
