"""``VLLMSampler``'s own logic against a stand-in ``vllm`` module, so the default run covers it without vLLM:
greedy draws one sample per problem and repeats it n times (vLLM refuses n > 1 at temperature 0), the eos token
is not counted, per-problem seeds and the sampling settings reach ``SamplingParams``, and on a CPU the engine starts
eager, bound to every core the process may use, with a bounded KV cache. The real engine is exercised by
tests/eval/test_vllm_backend.py (``make test-vllm``)."""

import os
import sys
import types
from types import SimpleNamespace as NS

import pytest

from eksft.eval.sampling import CPU_KVCACHE_GIB, SamplingConfig, VLLMSampler, cpu_id_list


@pytest.fixture
def fake_vllm(monkeypatch):
    made = {}

    class SamplingParams:
        def __init__(self, **kw):
            if kw["temperature"] == 0 and kw["n"] > 1:
                raise ValueError("n must be 1 when using greedy sampling")  # what vLLM 0.32 does
            self.__dict__.update(kw)

    class LLM:
        def __init__(self, **kw):
            made["engine"] = kw

        def get_tokenizer(self):
            return None

        llm_engine = NS(engine_core=NS(shutdown=lambda: made.update(shutdown=True)))

        def generate(self, prompts, params, use_tqdm=False):
            made["params"] = params
            outs = []
            for prompt, p in zip(prompts, params):
                stop = [
                    NS(text=f"{prompt}-{i}", token_ids=[5, 6, 2], finish_reason="stop", stop_reason=None)
                    for i in range(p.n)
                ]
                if p.n > 1:  # one sample cut by max_tokens: no eos to drop
                    stop[-1] = NS(text="cut", token_ids=[5, 6, 7], finish_reason="length", stop_reason=None)
                outs.append(NS(outputs=stop))
            return outs

    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams = LLM, SamplingParams
    platforms = types.ModuleType("vllm.platforms")
    platforms.current_platform = NS(is_cpu=lambda: True)
    for name in ("VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_OMP_THREADS_BIND"):  # the teardown removes what the CPU path sets
        monkeypatch.setenv(name, "x")
        monkeypatch.delenv(name)
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.platforms", platforms)
    return made


def test_greedy_repeats_one_sample_and_drops_eos(fake_vllm):
    sampler = VLLMSampler("m", SamplingConfig(n=3, temperature=0, max_new_tokens=7), dtype="float32")
    assert fake_vllm["engine"] == {"model": "m", "dtype": "float32", "seed": 0, "enforce_eager": True}
    assert os.environ["VLLM_CPU_OMP_THREADS_BIND"] == cpu_id_list(os.sched_getaffinity(0))  # every allowed core
    assert os.environ["VLLM_CPU_KVCACHE_SPACE"] == str(CPU_KVCACHE_GIB)
    out = sampler.sample(["a", "b"], [11, 12])
    assert [p.n for p in fake_vllm["params"]] == [1, 1] and [p.seed for p in fake_vllm["params"]] == [11, 12]
    assert [[s.text for s in samples] for samples in out] == [["a-0"] * 3, ["b-0"] * 3]
    assert all(s.num_tokens == 2 and not s.truncated and s.mean_entropy is None for r in out for s in r)
    sampler.close()  # the runner stops the engine process when a model is done
    assert fake_vllm["shutdown"]


def test_sampled_passes_settings_and_marks_truncation(fake_vllm):
    cfg = SamplingConfig(n=2, temperature=1.0, top_p=0.9, top_k=0, max_new_tokens=3)
    out = VLLMSampler("m", cfg, enforce_eager=False).sample(["a"], [7])
    (p,) = fake_vllm["params"]
    assert (p.n, p.temperature, p.top_p, p.top_k, p.max_tokens, p.seed) == (2, 1.0, 0.9, -1, 3, 7)
    assert fake_vllm["engine"]["enforce_eager"] is False  # an explicit choice wins over the CPU default
    (samples,) = out
    assert [(s.num_tokens, s.truncated) for s in samples] == [(2, False), (3, True)]
