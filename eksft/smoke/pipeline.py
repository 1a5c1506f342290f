"""``eksft pipeline CONFIG --smoke``: the whole pipeline (every method, every configured stage, the report) on the
smoke transform of its sections (transform.py), through the configured engine, then a resume check of the first
method's SFT stage and the checklist."""

from __future__ import annotations

import dataclasses
import os
import time

from .checklist import Checklist
from .data import available, benchmark_standin, standin_file
from .engine import child_environment, describe, engine_of, launcher_for
from .model import build_smoke_model
from .run import gpus, model_lines, resume_check, rl_lines, size_line, step_losses
from .transform import RL_RECORDS, SFT_RECORDS, cap, prepare_folder, rl_smoke, sft_smoke, smoke_folder

EVAL_PROBLEMS = 4
EVAL_SAMPLES = 2
EVAL_TOKENS = 64


def smoke_eval(e, folder: str, gpu: bool, notes: list):
    benchmarks = []
    for spec in e.benchmarks:
        new, note = benchmark_standin(spec, os.path.join(folder, "data"), EVAL_PROBLEMS)
        benchmarks.append(new)
        if note:
            notes.append(note)
    values = dataclasses.asdict(e)
    values.update(benchmarks=benchmarks, n=EVAL_SAMPLES, limit=EVAL_PROBLEMS, ks=sorted({1, EVAL_SAMPLES}))
    values["max_new_tokens"] = min(e.max_new_tokens, EVAL_TOKENS)
    values["batch_size"] = min(e.batch_size, EVAL_PROBLEMS * EVAL_SAMPLES)
    if not gpu:
        values["dtype"] = "float32"
    return type(e)(**values)


def smoke_pipeline(path: str, output_dir: str | None = None, stages=None, methods=None) -> Checklist:
    from eksft.config_io import config_from_values
    from eksft.eval.benchmarks import load_benchmark
    from eksft.pipeline import load_pipeline_config, run_pipeline
    from eksft.pipeline.run import data_file, rl_values, sft_values
    from eksft.rl import RLConfig
    from eksft.rl.data import load_prompts
    from eksft.train import EKSFTConfig
    from eksft.train.run import load_data

    start = time.time()
    pc = load_pipeline_config(path, {"stages": stages})  # the config's own errors, as without --smoke
    folder = output_dir or smoke_folder(pc.output_dir, "pipeline")
    if os.path.abspath(folder) == os.path.abspath(pc.output_dir):
        raise ValueError(f"--output_dir {folder!r} is the config's own output_dir; a smoke run writes elsewhere.")
    prepare_folder(folder)
    ck = Checklist("eksft pipeline", path, folder)
    n_gpus = gpus()
    name = pc.sft.get("model_name_or_path") or "tiny-random-llama"
    engine = engine_of(pc.sft, pc.launcher)
    launcher, processes = launcher_for(engine, folder, n_gpus)
    model_dir, data_dir = os.path.join(folder, "model"), os.path.join(folder, "data")
    notes: dict = {}
    split_data = pc.data is not None
    sft = sft_smoke(pc.sft, model_dir, None if split_data else data_dir, bool(n_gpus), notes)
    rl = rl_smoke(pc.rl, model_dir, None if split_data else data_dir, bool(n_gpus), processes, notes)
    method_notes: list[str] = []
    smoke_methods = {}
    for method, fields in pc.methods.items():
        fields = dict(fields)
        cap(fields, "sed_calibration_samples", 8, method_notes)
        cap(fields, "max_length", sft.get("max_length") or 256, method_notes)
        smoke_methods[method] = fields
    data = pc.data
    if split_data:
        src = data.train_file
        if available(src):
            notes["data"] = f"first {SFT_RECORDS} + {RL_RECORDS} records of {src}"
        else:
            src = standin_file(src, data_dir, SFT_RECORDS + RL_RECORDS, {**pc.sft, **pc.rl})
            notes["data"] = f"{data.train_file} is missing: stand-in {src} with the configured columns"
        data = dataclasses.replace(data, train_file=src, sft_samples=SFT_RECORDS, rl_samples=RL_RECORDS)
        if rl.get("skip_samples") and not available(data.train_file):
            rl["skip_samples"] = 0
    eval_notes: list[str] = []
    smoke = dataclasses.replace(
        pc,
        output_dir=folder,
        methods=smoke_methods,
        sft=sft,
        rl=rl,
        eval=smoke_eval(pc.eval, folder, bool(n_gpus), eval_notes),
        data=data,
        launcher=launcher,
    )
    # every stage's config and data, checked before a model is built or a process launched
    train_file = data_file(smoke)
    counts = {}
    for method in smoke.methods:
        if "sft" in smoke.stages:
            values = {**sft_values(smoke, method, train_file), "deepspeed": None}
            values["output_dir"] = os.path.join(folder, "check")
            where = f"{path} (sft, method {method})"
            cfg = config_from_values(values, EKSFTConfig, where=where)
            counts["sft"] = len(load_data(cfg)[0])
    if "rl" in smoke.stages:
        values = {**rl_values(smoke, next(iter(smoke.methods)), train_file), "deepspeed": None}
        values["output_dir"] = os.path.join(folder, "check")
        cfg = config_from_values(values, RLConfig, where=f"{path} (rl)", command="eksft rl")
        counts["rl"] = len(load_prompts(cfg))
    for spec in smoke.eval.benchmarks:
        load_benchmark(spec, limit=smoke.eval.limit)
    ck.add("ran", "config", f"every field of sft, rl and {len(pc.methods)} methods parsed; every benchmark loads")
    data_note = notes.get("data") or "; ".join(f"{k}: {v}" for k, v in notes.items() if k not in ("sft", "rl"))
    ck.add("replaced" if "stand-in" in data_note else "ran", "data", f"{data_note} ({counts})")
    for note in eval_notes:
        ck.add("replaced", "eval data", note)
    ck.add(
        "replaced",
        "sizes and steps",
        "; ".join(
            dict.fromkeys(
                [*notes.get("sft", []), *notes.get("rl", []), *method_notes, "max_steps -> 2, a checkpoint every step"]
            )
        ),
    )
    ck.add(
        "replaced",
        "evaluation",
        f"{EVAL_PROBLEMS} problems x {EVAL_SAMPLES} samples per benchmark, {smoke.eval.max_new_tokens} new tokens "
        f"(configured: n={pc.eval.n}, max_new_tokens={pc.eval.max_new_tokens}, limit={pc.eval.limit})",
    )
    built = build_smoke_model(name, model_dir)
    model_lines(ck, name, built)
    where = f"{processes} {'GPU' if n_gpus else 'CPU'} process(es)" + ("" if n_gpus else " over gloo")
    ck.add("ran", "engine", f"{describe(engine)} on {where}" if engine["name"] else describe(engine))
    with child_environment():
        chosen = list(methods or smoke.methods)
        first = chosen[0]
        # SFT for every method (each has its own loss fields); evaluation and RL, whose configs are the same for
        # every method (only the model folder differs), for the first one, or for every method given with --methods
        later = chosen if methods else [first]
        if "sft" in smoke.stages:
            run_pipeline(dataclasses.replace(smoke, stages=["sft"]), only=chosen)
        rest = [s for s in smoke.stages if s != "sft"]
        if rest:
            run_pipeline(dataclasses.replace(smoke, stages=rest), only=later)
        for method in chosen:
            stages = smoke.stages if method in later else [s for s in smoke.stages if s == "sft"]
            stage_lines(ck, dataclasses.replace(smoke, stages=stages), method)
        skipped = [m for m in chosen if m not in later]
        if rest and skipped:
            ck.add(
                "not checked",
                "other methods' later stages",
                f"{', '.join(rest)} ran for {first} only: their settings are the same for {', '.join(skipped)} (only "
                "the model folder differs); `--methods NAME ...` runs every stage of the methods named",
            )
        if "sft" in smoke.stages:
            import yaml

            run_dir = os.path.join(folder, first, "sft")
            with open(os.path.join(run_dir, "config.yaml"), encoding="utf-8") as f:
                values = yaml.safe_load(f)
            resume_check(ck, "train", values, run_dir, folder, launcher)
    report = os.path.join(folder, "report", "report.md")
    ck.add("ran" if os.path.isfile(report) else "failed", "report", report)
    size_line(ck, name, built, {**pc.sft, **next(iter(pc.methods.values()))}, engine_of(pc.sft, pc.launcher), "train")
    print(ck.finish(bool(n_gpus), time.time() - start), flush=True)
    return ck


def stage_lines(ck: Checklist, pc, method: str) -> None:
    import json

    for stage in pc.stages:
        out = os.path.join(pc.output_dir, method, stage)
        done = os.path.join(out, "DONE.json")
        if not os.path.isfile(done):
            ck.add("failed", f"{method}/{stage}", f"no {done}")
            continue
        seconds = json.load(open(done, encoding="utf-8")).get("seconds")
        if stage in ("sft", "rl"):
            losses = step_losses(out)
            ok = sorted(losses) == [1, 2]
            text = ", ".join(f"{v:.4f}" for _, v in sorted(losses.items()))
            ck.add(
                "ran" if ok else "failed", f"{method}/{stage}", f"2 steps, losses {text or 'none logged'} ({seconds} s)"
            )
            if stage == "rl":
                rl_lines(ck, out)
        else:
            results = [f for f in os.listdir(out) if f.endswith(".json")]
            ck.add("ran", f"{method}/{stage}", f"{len(results)} result files ({seconds} s)")
