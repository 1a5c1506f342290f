"""``eksft eval --data-parallel``: 2 worker processes give the files of 1 process, byte for byte, on an uneven split
(5 problems in generate calls of 2: {a, b}, {c, d}, {e} dealt as {a, b, e} / {c, d}); a worker killed mid-run
(the ``EKSFT_EVAL_WORKER_EXIT`` hook, ``os._exit``) leaves its finished problems, and a rerun samples only the rest
and ends with the uninterrupted run's results. Also: the one-line errors for bad layouts, ``--tensor-parallel``
reaching vLLM's engine (a stand-in ``vllm`` module), each worker's devices and threads, and the pipeline's default of
every visible GPU.

CPU, tiny random Llama; each worker process imports transformers (about 5-10 s on 2 shared cores), which is most of
this module's minute.
"""

import json
import os
import sys
import types
from pathlib import Path
from types import SimpleNamespace as NS

import pytest

from eksft import cli
from eksft.eval import parallel, runner
from eksft.eval.samples import read_samples
from eksft.eval.sampling import SamplingConfig, make_sampler
from eksft.models.tiny import save_tiny

pytestmark = pytest.mark.usefixtures("one_thread")

PROBLEMS = [{"id": c, "problem": f"What is {i}+{i}?", "answer": str(2 * i)} for i, c in enumerate("abcde")]
OUTPUTS = {"results.json", "results.csv", "table.md", "samples.jsonl", "run_config.json", "pass_at_k_five.png"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The model, the benchmark and the single-process reference run."""
    root = tmp_path_factory.mktemp("dp")
    model = str(save_tiny(root / "tiny", seed=0))
    data = root / "five.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in PROBLEMS))
    one = root / "one"
    assert cli.main(argv(model, data, one)) == 0
    return root, model, str(data), one


def argv(model, data, out, *extra):
    # n 2 and batch size 4: two problems per generate call, seeded by the first: calls must stay whole
    return [
        "eval", model, "--benchmark", str(data), "--n", "2", "--k", "1,2", "--max-new-tokens", "6",
        "--batch-size", "4", "--output-dir", str(out), "--no-progress", *extra,
    ]  # fmt: skip


@pytest.fixture
def record_plans(monkeypatch):
    """The workers' calls of each run (problem ids per call), and no model ever loads in this (the parent) process."""
    plans = []
    original = parallel.plan

    def recording(*args):
        shares = original(*args)
        plans.append([[[p["id"] for p in call["problems"]] for call in share] for share in shares])
        return shares

    def refuse(*args, **kwargs):
        raise AssertionError("the parent process loaded a model")

    monkeypatch.setattr(parallel, "plan", recording)
    monkeypatch.setattr(runner, "make_sampler", refuse)
    return plans


def results(folder):
    return json.loads((folder / "results.json").read_text())


def test_two_workers_equal_one(setup, record_plans, capsys):
    root, model, data, one = setup
    two = root / "two"
    assert cli.main(argv(model, data, two, "--data-parallel", "2")) == 0
    assert record_plans == [[[["a", "b"], ["e"]], [["c", "d"]]]]  # uneven: 3 problems and 2
    assert "5 problem(s) to sample on 2 worker process(es), 1 thread(s) each" in capsys.readouterr().out
    assert {p.name for p in two.iterdir()} == OUTPUTS  # the workers' folder is gone
    for name in OUTPUTS - {"pass_at_k_five.png"}:  # every sample, pass@k, interval and table: the same bytes
        assert (two / name).read_bytes() == (one / name).read_bytes(), name
    summary = results(two)["results"]["five"][model]
    assert summary["num_problems"] == 5 and [r["id"] for r in summary["per_problem"]] == list("abcde")


def test_killed_worker_resumes_without_redoing_finished_problems(setup, record_plans, monkeypatch, capsys):
    root, model, data, one = setup
    out = root / "killed"
    monkeypatch.setenv(parallel.FAULT_ENV, "0:1")  # worker 0 dies after its first call ({a, b}), before {e}
    assert cli.main(argv(model, data, out, "--data-parallel", "2")) == 1
    err = capsys.readouterr().err
    assert err.startswith("eksft eval: eval worker 0 of 2 exited with code 75") and "rerun the same command" in err
    kept = (out / "samples.jsonl").read_bytes()
    assert sorted({json.loads(line)["problem_id"] for line in kept.splitlines()}) == list("abcd")
    assert (out / "workers" / "worker-0.log").is_file() and not list((out / "workers").glob("*.jsonl"))

    monkeypatch.delenv(parallel.FAULT_ENV)
    assert cli.main(argv(model, data, out, "--data-parallel", "2")) == 0
    assert record_plans[1] == [[["e"]]]  # only the missing problem, on one worker
    assert "1 problem(s) to sample on 1 worker process(es)" in capsys.readouterr().out
    resumed = (out / "samples.jsonl").read_bytes()
    assert resumed.startswith(kept)  # the finished problems' lines untouched
    reference = (one / "samples.jsonl").read_bytes().splitlines()
    assert sorted(resumed.splitlines()) == sorted(reference)  # every sample as in the uninterrupted run
    assert results(out)["results"] == results(one)["results"]
    assert {p.name for p in out.iterdir()} == OUTPUTS


def test_merge_keeps_complete_problems_of_a_dead_run(setup, tmp_path):
    """The parent died too: the next run appends the complete problems a worker file holds and drops a torn one."""
    _, model, data, one = setup
    lines = (one / "samples.jsonl").read_text().splitlines(keepends=True)  # a, a, b, b, c, c, d, d, e, e
    (tmp_path / "workers").mkdir()
    (tmp_path / "workers" / "worker-1.jsonl").write_text("".join(lines[4:6] + lines[0:2] + lines[6:7]))
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(lines[2:4]))
    done = read_samples(samples, 2)
    cfg = runner.EvalConfig(models=[model], benchmarks=[data], output_dir=str(tmp_path), sampling=SamplingConfig(n=2))
    benches, _ = runner._load_benchmarks(cfg)
    assert parallel.merge(tmp_path / "workers", samples, cfg, benches, done) == 2
    assert samples.read_text() == "".join(lines[2:4] + lines[0:2] + lines[4:6])  # b, then a and c in benchmark order
    assert sorted(k[2] for k in done) == ["a", "b", "c"] and not list((tmp_path / "workers").iterdir())


def test_a_workers_user_error_is_the_commands_error(tmp_path):
    """A worker's user error (the same for every worker: a model without tokenizer) is said as one process says it;
    any other death names the worker and its log."""
    (tmp_path / "worker-1.log").write_text("loading\nSegmentation fault\n")
    err = parallel._failure(tmp_path, [(1, 139)], 2)
    assert isinstance(err, parallel.WorkerFailed) and "worker 1 of 2 exited with code 139 (Segmentation fault)" in str(
        err
    )
    (tmp_path / "worker-1.error").write_text("could not load a tokenizer from m")
    err = parallel._failure(tmp_path, [(1, 2)], 2)
    assert type(err) is ValueError and str(err) == "could not load a tokenizer from m"


@pytest.mark.parametrize(
    "flags, gpus, message",
    [
        (["--data-parallel", "0"], None, "eksft eval: --data-parallel: must be >= 1, got 0."),
        (["--tensor-parallel", "2"], None, "eksft eval: --tensor-parallel 2 needs the vLLM backend"),
        (["--data-parallel", "3"], None, "--data-parallel 3 x --tensor-parallel 1 = 3 processes, but no GPU"),
        (["--data-parallel", "3", "--tensor-parallel", "2", "--backend", "vllm"], 4, "needs 6 GPUs, 4 are visible"),
    ],
)
def test_bad_layouts_are_one_line_errors(setup, tmp_path, monkeypatch, capsys, flags, gpus, message):
    _, model, data, _ = setup
    monkeypatch.setattr(parallel, "cuda_devices", lambda: [str(i) for i in range(gpus or 0)])
    monkeypatch.setattr(parallel, "cpu_cores", lambda: 2)
    monkeypatch.setattr(runner, "choose_backend", lambda name: "hf" if name == "auto" else name)
    assert cli.main(argv(model, data, tmp_path / "out", *flags)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # refused before anything was written


@pytest.fixture
def fake_vllm(monkeypatch):
    """A stand-in ``vllm``: records the engine's arguments, answers every prompt with 'x'."""
    engines = []

    class LLM:
        def __init__(self, **kwargs):
            engines.append(kwargs)

        def get_tokenizer(self):
            return None

        def generate(self, prompts, params, use_tqdm=False):
            sample = NS(text="x", token_ids=[1], finish_reason="length", stop_reason=None)
            return [NS(outputs=[sample] * p.n) for p in params]

    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams = LLM, lambda **kw: NS(**kw)
    platforms = types.ModuleType("vllm.platforms")
    platforms.current_platform = NS(is_cpu=lambda: False)
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.platforms", platforms)
    return engines


def test_tensor_parallel_reaches_the_vllm_engine(setup, tmp_path, monkeypatch, fake_vllm):
    """What a GPU run would pass to ``vllm.LLM`` (serving the model over 2 GPUs there is untested here)."""
    _, model, data, _ = setup
    make_sampler("vllm", "m", SamplingConfig(n=2))
    assert "tensor_parallel_size" not in fake_vllm[-1]  # vLLM's own default, 1
    monkeypatch.setattr(parallel, "cuda_devices", lambda: ["0", "1"])
    monkeypatch.setattr(runner, "choose_backend", lambda name: name)
    flags = ["--backend", "vllm", "--tensor-parallel", "2", "--no-chat-template"]
    assert cli.main(argv(model, data, tmp_path, *flags)) == 0
    assert fake_vllm[-1]["tensor_parallel_size"] == 2 and fake_vllm[-1]["model"] == model
    assert results(tmp_path)["results"]["five"][model]["num_problems"] == 5


def test_worker_devices_and_threads(monkeypatch):
    import torch

    monkeypatch.setattr(parallel, "cuda_devices", lambda: ["2", "3", "5", "7"])
    envs, threads = parallel.worker_envs(2, 2)
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["2,3", "5,7"] and threads is None
    assert envs[0]["PYTHONPATH"].split(os.pathsep)[0] == str(Path(parallel.__file__).resolve().parents[2])  # this eksft
    monkeypatch.setattr(parallel, "cuda_devices", lambda: [])
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)  # this process's threads, shared out
    envs, threads = parallel.worker_envs(3, 1)
    assert threads == 2 and all(e["OMP_NUM_THREADS"] == "2" and "CUDA_VISIBLE_DEVICES" not in e for e in envs)


def test_pipeline_evaluates_on_every_visible_gpu(monkeypatch, tmp_path):
    from eksft.pipeline import config as pipeline_config
    from eksft.pipeline import run as pipeline_run

    def pipeline(**ev):
        values = {"output_dir": str(tmp_path), "methods": ["sft"], "sft": {}, "rl": {}}
        return pipeline_config.pipeline_config_from({**values, "eval": {"benchmarks": ["arithmetic-easy"], **ev}})

    seen = []
    monkeypatch.setattr(runner, "evaluate", lambda cfg, log: seen.append((cfg.data_parallel, cfg.tensor_parallel)))
    for gpus, ev, expected in [
        (8, {}, (8, 1)),
        (8, {"tensor_parallel": 2}, (4, 2)),
        (8, {"data_parallel": 3}, (3, 1)),
        (0, {}, (1, 1)),
    ]:
        monkeypatch.setattr(parallel, "cuda_devices", lambda n=gpus: [str(i) for i in range(n)])
        pipeline_run._evaluate("model", str(tmp_path / "e"), pipeline(**ev), log=None)
        assert seen[-1] == expected, (gpus, ev)
    with pytest.raises(ValueError, match=r"pipeline eval\.data_parallel: need a whole number >= 1, got 0"):
        pipeline(data_parallel=0)
    # a layout the machine cannot run stops before any stage (and before the output folder is made)
    monkeypatch.setattr(parallel, "cpu_cores", lambda: 2)
    out = tmp_path / "never"
    pc = pipeline(data_parallel=3)
    pc.output_dir = str(out)
    with pytest.raises(
        ValueError, match=r"^pipeline eval\.data_parallel 3 x pipeline eval\.tensor_parallel 1 = 3 proc"
    ):
        pipeline_run.run_pipeline(pc, log=lambda *_: None)
    assert not out.exists()
    pc.stages = ["sft", "rl"]  # no evaluation: no check
    pipeline_run.check_eval_layout(pc)
