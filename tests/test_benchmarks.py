"""The benchmark scripts run end to end on tiny shapes and print well-formed JSON lines (benchmarks/README.md).

``loss_head.py``: the per-case subprocesses, the memory guard (``skipped_over_memory`` without starting anything), an
address-space cap hit reported as ``"oom"`` (not dropped), and every implementation's worker. ``train_step.py``: one
interleaved round of every method on the built-in ``tiny-random-llama``. ``gpu_check.py --tiny``: the whole GPU check
at tiny shapes on CPU with trl and datasets made unimportable (a bare GPU image), one JSON document, fp32 parity.
``rl_rollouts.py``: HF rollouts on the tiny model, one timed call per (re)fill batch.
No timing numbers are checked, only the format. CPU only, tiny shapes (about 40 s in all, most of it importing
torch / TRL / transformers in the subprocesses).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
RUN_KEYS = {"T", "V", "d", "impl", "status", "estimate_gb"}
OK_KEYS = RUN_KEYS | {"time_s", "times_s", "cpu_s", "peak_above_inputs_gb", "inputs_rss_gb", "loss", "threads"}
RATIO_KEYS = {
    "ratios",
    "T",
    "V",
    "d",
    "fused_over_logits_memory",
    "fused_over_trl_memory",
    "fused_over_trl_time",
    "fused_over_logits_time",
    "status",
}


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def json_lines(text: str) -> list[dict]:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert lines, "the script printed nothing"
    return [json.loads(ln) for ln in lines]  # every line must be JSON


def run_cli(script: str, *args: str, timeout: int = 120) -> list[dict]:
    proc = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json_lines(proc.stdout)


def test_loss_head_runs_each_case_in_a_subprocess():
    rows = run_cli(
        "loss_head.py",
        "--T",
        "64",
        "--V",
        "512",
        "--d",
        "32",
        "--repeats",
        "1",
        "--implementations",
        "eksft_fused",
        "sft_torch",
    )
    runs, ratios = rows[:-1], rows[-1]
    assert [r["impl"] for r in runs] == ["eksft_fused", "sft_torch"]
    for r in runs:
        assert OK_KEYS <= r.keys() and r["status"] == "ok", r
        assert r["time_s"] > 0 and len(r["times_s"]) == 1 and r["peak_above_inputs_gb"] >= 0
    assert RATIO_KEYS <= ratios.keys() and ratios["ratios"] is True
    assert ratios["fused_over_torch_sft_time"] > 0 and ratios["fused_over_logits_time"] is None  # logits not run


def test_loss_head_reports_a_run_over_its_memory_cap_as_oom():
    # 6 (T, V) fp32 blocks of 134 MB do not fit under a 1 GB address-space cap: the worker fails alone
    (row, ratios) = run_cli(
        "loss_head.py",
        "--T",
        "2048",
        "--V",
        "16384",
        "--d",
        "32",
        "--repeats",
        "1",
        "--implementations",
        "eksft_logits",
        "--mem-cap-gb",
        "1.0",
    )
    assert row["status"] == "oom" and row["impl"] == "eksft_logits" and "error" in row, row
    assert ratios["status"] == {"eksft_logits": "oom"}


def test_loss_head_memory_guard_skips_without_running(capsys):
    lh = load("loss_head")
    lh.main(
        [
            "--T",
            "4096",
            "--V",
            "151936",
            "--d",
            "2560",
            "--implementations",
            "eksft_logits",
            "eksft_fused",
            "--max-gb",
            "1",
        ]
    )
    rows = json_lines(capsys.readouterr().out)
    assert [r["status"] for r in rows[:2]] == ["skipped_over_memory"] * 2
    for r in rows[:2]:
        assert {"T", "V", "d", "impl", "estimate_gb", "estimate_above_inputs_gb", "max_gb", "available_gb"} <= r.keys()
        assert r["estimate_gb"] > 1
    assert rows[2]["ratios"] and rows[2]["fused_over_logits_memory"] is None

    lh.main(["--grid", "full", "--estimate-only"])
    est = json_lines(capsys.readouterr().out)
    assert len(est) == 3 * 2 * 2 * len(lh.IMPLS)
    assert all(r["status"] == "estimate" and r["estimate_gb"] > 0 for r in est)
    big = {r["impl"]: r["estimate_gb"] for r in est if (r["T"], r["V"], r["d"]) == (4096, 151936, 2560)}
    assert big["eksft_fused"] < big["sft_trl"] < big["sft_torch"] < big["eksft_logits"]


def test_loss_head_grid_and_filter_flags():
    lh = load("loss_head")
    a = lh.parse(["--grid", "issue", "--implementations", "sft_trl", "eksft_fused", "--repeats", "2"])
    assert (a.T, a.V, a.d, a.impl, a.repeats) == (
        [1024, 4096],
        [49152, 151936],
        [576, 2560],
        ["sft_trl", "eksft_fused"],
        2,
    )
    assert lh.parse([]).T == [1024, 2048, 4096]  # no flags: the full grid, as before
    assert (lh.parse(["--quick"]).T, lh.parse(["--grid", "target", "--T", "512"]).T) == ([1024], [512])


@pytest.mark.parametrize("impl", ["eksft_logits", "sft_trl", "sft_fused"])
def test_loss_head_worker_every_implementation(impl):
    lh = load("loss_head")
    out = lh.worker(lh.parse(["--worker", "--T", "32", "--V", "256", "--d", "16", "--impl", impl, "--repeats", "1"]))
    assert out["status"] == "ok" and out["time_s"] > 0 and out["loss"] > 0


def test_loss_head_sft_rows_compute_the_same_loss():
    """The three plain cross-entropy rows (full logits, eksft's fused head, TRL's chunked head) on the same inputs."""
    lh = load("loss_head")
    inputs = lh.make_inputs(48, 300, 16)
    losses = {impl: lh.step(impl, *inputs, chunk_size=64) for impl in ("sft_torch", "sft_fused", "sft_trl")}
    assert losses["sft_fused"] == pytest.approx(losses["sft_torch"], rel=1e-5)
    assert losses["sft_trl"] == pytest.approx(losses["sft_torch"], rel=1e-5)


def test_train_step_interleaves_every_method(capsys):
    ts = load("train_step")
    threads = torch.get_num_threads()
    ts.main(
        [
            "--model",
            "tiny-random-llama",
            "--batch",
            "2",
            "--seq-len",
            "128",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--threads",
            "1",
            "--baseline",
            "sft_trl",
        ]
    )
    assert torch.get_num_threads() == threads  # restored after the run
    rows = json_lines(capsys.readouterr().out)
    runs, summary = rows[:-1], rows[-1]
    impls = {
        "sft_trl": "trl_chunked",
        "sft_logits": "logits",
        "eksft_fused": "fused",
        "eksft_logits": "logits",
        "ref_forward": "forward_only",
    }
    assert [r["method"] for r in runs] == list(impls)
    for r in runs:
        assert r["status"] == "ok", r
        assert r["loss_implementation"] == impls[r["method"]]
        assert r["time_s"] > 0 and r["fwd_bwd_s"] > 0 and len(r["times_s"]) == 1
        assert r["over_sft"] > 0 and r["over_ref_forward"] > 0 and r["sft_baseline"] == "sft_trl"
        assert (r["batch"], r["seq_len"], r["tokens"]) == (2, 128, 256) and r["scored_targets"] > 0
        assert r["threads"] == 1  # --threads reached the run
    by = {r["method"]: r for r in runs}
    assert by["sft_trl"]["loss"] == pytest.approx(by["sft_logits"]["loss"], rel=1e-4)  # same batch, same weights
    assert by["eksft_fused"]["loss"] == pytest.approx(by["eksft_logits"]["loss"], rel=1e-4)  # both heads, one loss
    assert summary["summary"] is True and summary["eksft_fused_over_sft"] > 0
    assert set(summary["status"].values()) == {"ok"}


BARE_IMAGE = """
import sys
sys.modules["trl"] = sys.modules["datasets"] = None  # importing either now fails: a bare GPU image
sys.path.insert(0, sys.argv[1])
import gpu_check
gpu_check.main(["--tiny", "--out", sys.argv[2]])
"""


def test_gpu_check_tiny_runs_without_trl_or_datasets(tmp_path):
    out = tmp_path / "check" / "gpu.json"
    proc = subprocess.run(
        [sys.executable, "-c", BARE_IMAGE, str(BENCH), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)  # one JSON document on stdout ...
    assert doc == json.loads(out.read_text())  # ... and the same in --out
    assert doc["bench"] == "gpu_check" and doc["tiny"] is True and doc["environment"]["device"] == "cpu"
    assert doc["imported_trl"] is False and doc["imported_datasets"] is False and doc["budget_exhausted"] is False
    rows = doc["loss_head"]
    assert len(rows) == 2 * 2 * 2 * 5  # T x d x precision x implementation
    for r in rows:
        if r["impl"] == "liger_flce" and doc["environment"]["liger_kernel"] is None:
            assert r["status"] == "unavailable"
            continue
        assert r["status"] == "ok", r
        assert r["time_ms"] > 0 and len(r["times_ms"]) == doc["settings"]["repeats"] and r["loss"] > 0
        if r["impl"] in ("eksft_fused", "sft_fused"):
            p = r["parity"]
            assert p["against"] == {"eksft_fused": "eksft_logits", "sft_fused": "sft_ce"}[r["impl"]]
            tol = 1e-5 if r["precision"] == "fp32" else 2e-2  # fp32: the same numbers; bf16 logits: rounding
            assert p["loss_rel_diff"] < tol, r
            assert p["grad_hidden_rel_l2"] < 10 * tol and p["grad_weight_rel_l2"] < 10 * tol, r
    ratios = doc["loss_head_ratios"]
    assert len(ratios) == 8 and all(x["eksft_fused_over_logits_time"] > 0 for x in ratios)
    step = doc["train_step"]
    assert step["status"] == "ok" and step["gradient_checkpointing"] and step["dtype"] == "bfloat16"
    assert step["eksft_over_sft_time"] > 0 and step["sft"]["loss"] > 0 and step["eksft"]["loss"] > 0
    assert len(step["eksft"]["times_ms"]) == doc["settings"]["repeats"]
    # the scale path (pipeline smoke, vLLM eval, vLLM rl) needs a GPU: with --tiny each says it was skipped and why
    scale = doc["scale_path"]
    for name in ("pipeline_smoke", "eval_vllm", "rl_vllm"):
        assert scale[name] == {"status": "skipped", "reason": "--tiny"}, scale


def test_gpu_check_real_shapes_are_the_issues():
    gc = load("gpu_check")
    a = gc.parse([])
    assert (a.T, a.V, a.d, a.train_T, a.repeats) == ([4096, 16384], 151936, [2560, 4096], 4096, 5)
    assert a.precisions == ["bf16_autocast", "fp32"] and "liger_flce" in a.impls and a.budget_s <= 600
    cfg = gc.qwen3_4b_config(tiny=False)
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.vocab_size, cfg.tie_word_embeddings) == (36, 2560, 151936, True)


def test_gpu_check_liger_plumbing_with_a_stand_in(monkeypatch, capsys):
    """liger_flce is only importable with CUDA + triton; a plain-torch stand-in with Liger's call signature checks the
    plumbing here (bf16 copies under autocast, parity against sft_ce, the ratios)."""
    import types

    import torch.nn.functional as F

    class FLCE(torch.nn.Module):
        def __init__(self, ignore_index=-100):
            super().__init__()
            self.ignore_index = ignore_index

        def forward(self, weight, x, target):  # LigerFusedLinearCrossEntropyLoss(lin_weight, _input, target)
            assert x.dtype == weight.dtype and not torch.is_autocast_enabled(x.device.type)
            return F.cross_entropy(x @ weight.t(), target, ignore_index=self.ignore_index)

    sub = types.ModuleType("liger_kernel.transformers")
    sub.LigerFusedLinearCrossEntropyLoss = FLCE
    monkeypatch.setitem(sys.modules, "liger_kernel", types.ModuleType("liger_kernel"))
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers", sub)
    gc = load("gpu_check")
    doc = gc.main(["--tiny", "--skip-train-step", "--T", "64", "--d", "32", "--impl", "sft_ce", "liger_flce"])
    capsys.readouterr()
    assert "train_step" not in doc and doc["environment"]["liger_kernel"]
    rows = {r["precision"]: r for r in doc["loss_head"] if r["impl"] == "liger_flce"}
    assert rows["fp32"]["status"] == rows["bf16_autocast"]["status"] == "ok"
    assert rows["fp32"]["parity"]["loss_rel_diff"] < 1e-6 and rows["bf16_autocast"]["parity"]["loss_rel_diff"] < 2e-2
    assert all(x["eksft_fused_over_liger_time"] is None for x in doc["loss_head_ratios"])  # eksft_fused not run


def test_gpu_check_scale_path_commands_are_valid(monkeypatch, tmp_path):
    """What the scale path would launch on a GPU, checked here: the pipeline smoke command and the eval command parse
    with eksft's own parser, the rl config's fields are RLConfig fields, and each check gets its own record; without
    vLLM the two vLLM checks say why they were skipped."""
    import dataclasses

    from eksft.cli import build_parser
    from eksft.rl import RLConfig

    sp = load("scale_path")
    launched = []

    def fake_run(name, cmd, budget):
        launched.append((name, cmd))
        return {"status": "ok", "seconds": 0.0, "command": cmd}

    monkeypatch.setattr(sp, "_run", fake_run)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(sp, "save_small_model", lambda folder: str(folder))
    real_find_spec = importlib.util.find_spec
    for has_vllm in (False, True):
        launched.clear()
        monkeypatch.setattr(
            sp.importlib.util,
            "find_spec",
            lambda n, f=real_find_spec, v=has_vllm: object() if n == "vllm" and v else f(n),
        )
        out = sp.scale_path(tmp_path / f"work{has_vllm}", budget=None)
        assert out["vllm_importable"] is has_vllm and out["pipeline_smoke"]["status"] == "ok"
        if not has_vllm:
            assert out["eval_vllm"]["status"] == out["rl_vllm"]["status"] == "skipped"
            assert "vllm" in out["eval_vllm"]["reason"]
    assert [n for n, _ in launched] == ["pipeline_smoke", "eval_vllm", "rl_vllm"]
    for name, cmd in launched:
        argv = cmd[cmd.index("eksft.cli") + 1 :]
        args = build_parser(argv).parse_args(argv)
        if name == "pipeline_smoke":
            assert args.smoke and args.methods == ["eksft"] and args.config.endswith("pipeline_qwen3_4b.yaml")
        elif name == "eval_vllm":
            assert args.backend == "vllm"
        else:
            fields = {f.name for f in dataclasses.fields(RLConfig)}
            config = json.loads(open(argv[1]).read())
            assert set(config) <= fields and config["use_vllm"] is True and config["max_steps"] == 2


def test_rl_rollouts_times_every_generation_call(tmp_path, one_thread):
    """``rl_rollouts.py`` with HF rollouts on the tiny model: every generation call (refills included) is counted."""
    sys.path.insert(0, str(BENCH))
    try:
        import rl_rollouts
    finally:
        sys.path.remove(str(BENCH))
    root = str(BENCH.parent)
    args = ["--use_vllm", "false", "--max_steps", "2", "--output_dir", str(tmp_path / "r"), "--max_samples", "8"]
    line = rl_rollouts.main([os.path.join(root, "configs", "rl_demo_cpu.yaml"), *args])
    assert line["rollouts"] == "hf" and line["steps"] == 2 and line["completions_per_call"] == 8
    assert line["generate_calls"] == sum(line["generation_batches"]) >= 2  # one call per (re)fill batch
    assert 0 < line["tokens"] <= line["generate_calls"] * 8 * line["max_completion_length"]
    json.dumps(line)  # one JSON line


def test_train_step_trees_compares_two_checkouts(capsys):
    """``train_step_trees.py`` with this checkout on both sides: one round, each tree's train_step.py as its own
    subprocess, a row per method with both trees' step times and their ratio, then the summary."""
    trees = load("train_step_trees")
    repo = str(BENCH.parent)
    trees.main(
        ["--old", repo, "--new", repo, "--model", "tiny-random-llama", "--batch", "2", "--seq-len", "64"]
        + ["--rounds", "1", "--repeats", "1", "--warmup", "0"]
    )
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    row, summary = rows
    assert row["method"] == "eksft_fused" and len(row["old_times_s"]) == len(row["new_times_s"]) == 1
    assert row["old_time_s"] > 0 and row["new_time_s"] > 0
    assert row["ratio_new_over_old"] == pytest.approx(row["new_time_s"] / row["old_time_s"], rel=1e-2)
    assert summary["summary"] and summary["ratio_new_over_old"] == {"eksft_fused": row["ratio_new_over_old"]}
