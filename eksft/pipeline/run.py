"""``run_pipeline(config)``: for every method, SFT (eksft.train) -> evaluation (eksft.eval) -> DAPO (eksft.rl) ->
evaluation, then one report (report.py). docs/rl.md, "eksft pipeline".

Layout under ``output_dir``::

    data/<name>.jsonl            the built-in set written once, when data.train_file is synthetic:NAME
    <method>/sft/                SFT model, metrics.jsonl, config.yaml (the resolved EKSFTConfig fields), DONE.json
    <method>/sft_eval/           eksft eval outputs of the SFT model
    <method>/rl/                 DAPO model, metrics.jsonl, config.yaml, DONE.json
    <method>/rl_eval/            eksft eval outputs of the RL model
    report/                      report.md, report.json, pass@k plots

Resuming: a stage is finished when its ``DONE.json`` exists (written last, so a folder left by a crash never counts).
An unfinished training stage resumes from its last checkpoint; an unfinished evaluation resumes through
``eksft eval``'s own samples.jsonl bookkeeping.
"""

from __future__ import annotations

import gc
import json
import os
import shlex
import subprocess
import sys
import time

import yaml

from eksft.config_io import config_from_values

from .config import PipelineConfig
from .layout import is_done, mark_done, stage_dir
from .report import write_report

# ------------------------------------------------------------------------------------------------------ data


def data_file(pc: PipelineConfig) -> str | None:
    """The file both stages read; a built-in synthetic set is written once (SFT trains on files)."""
    from eksft.rl.config import SYNTHETIC_PREFIX
    from eksft.rl.data import write_synthetic_jsonl

    if pc.data is None:
        return None
    src = pc.data.train_file
    if not src.startswith(SYNTHETIC_PREFIX):
        return src
    if pc.data.rl_samples is None:
        raise ValueError("pipeline data.rl_samples: built-in synthetic sets are unbounded; set how many RL prompts.")
    name = src[len(SYNTHETIC_PREFIX) :]
    path = os.path.join(pc.output_dir, "data", f"{name}-{pc.data.sft_samples}+{pc.data.rl_samples}.jsonl")
    if not os.path.exists(path):
        write_synthetic_jsonl(name, pc.data.sft_samples + pc.data.rl_samples, path + ".tmp")
        os.replace(path + ".tmp", path)
    return path


def sft_values(pc: PipelineConfig, method: str, train_file: str | None) -> dict:
    values = {**pc.sft, **pc.methods[method], "output_dir": stage_dir(pc, method, "sft"), "seed": pc.seed}
    if train_file is not None:  # records [0, sft_samples)
        values.update(train_file=train_file, max_samples=pc.data.sft_samples)
    return values


def rl_values(pc: PipelineConfig, method: str, train_file: str | None) -> dict:
    values = {
        **pc.rl,
        "model_name_or_path": stage_dir(pc, method, "sft"),
        "output_dir": stage_dir(pc, method, "rl"),
        "seed": pc.seed,
    }
    if train_file is not None:  # the disjoint rest: [sft_samples, sft_samples + rl_samples)
        values.update(train_file=train_file, skip_samples=pc.data.sft_samples, max_samples=pc.data.rl_samples)
    return values


# ------------------------------------------------------------------------------------------------------ stages


def _train(kind: str, values: dict, out: str, pc: PipelineConfig, log) -> None:
    """One training stage (kind 'train' or 'rl'), in this process or through ``pc.launcher``."""
    from eksft.jobs.output_dir import latest_complete

    os.makedirs(out, exist_ok=True)
    config_path = os.path.join(out, "config.yaml")
    with open(config_path, "w", encoding="utf-8") as f:
        yaml.safe_dump(values, f, sort_keys=False)
    resume = latest_complete(out)  # a checkpoint cut short by a crash is skipped, never resumed from
    if resume:
        log(f"[pipeline]   resuming from {resume}")
    if pc.launcher:  # multi-GPU: e.g. "accelerate launch --num_processes 8 -m eksft.cli"
        cmd = [*shlex.split(pc.launcher), kind, config_path, *(["--resume_from_checkpoint", resume] if resume else [])]
        log(f"[pipeline]   $ {shlex.join(cmd)}")
        code = subprocess.run(cmd).returncode
        if code != 0:
            raise RuntimeError(
                f"pipeline stage {out}: `{shlex.join(cmd)}` exited with {code}; fix the error above "
                "and rerun the pipeline (finished stages are skipped, this one resumes)."
            )
        return
    if kind == "train":
        from eksft.train import EKSFTConfig, train

        train(config_from_values(values, EKSFTConfig, where=f"pipeline sft ({out})"), resume_from_checkpoint=resume)
    else:
        from eksft.rl import RLConfig, train_rl

        cfg = config_from_values(values, RLConfig, where=f"pipeline rl ({out})", command="eksft rl")
        train_rl(cfg, resume_from_checkpoint=resume)


def eval_layout(pc: PipelineConfig) -> tuple[int, int]:
    """``(data_parallel, tensor_parallel)`` of the evaluations: every visible GPU unless ``eval.data_parallel``
    says otherwise (1 without GPUs)."""
    from eksft.eval.parallel import default_data_parallel

    e = pc.eval
    return e.data_parallel or default_data_parallel(e.tensor_parallel), e.tensor_parallel


def check_eval_layout(pc: PipelineConfig) -> None:
    """Refuse, before any stage runs, an evaluation layout this machine cannot run (``eval.data_parallel`` x
    ``eval.tensor_parallel`` over the GPUs or cores, tensor parallel without vLLM)."""
    from types import SimpleNamespace

    from eksft.eval.parallel import check_parallel
    from eksft.eval.sampling import choose_backend

    if not any(stage.endswith("_eval") for stage in pc.stages):
        return
    dp, tp = eval_layout(pc)
    try:
        check_parallel(SimpleNamespace(data_parallel=dp, tensor_parallel=tp), choose_backend(pc.eval.backend))
    except ValueError as err:
        raise ValueError(
            str(err).replace("EvalConfig.", "pipeline eval.").replace("--backend vllm", "backend: vllm")
        ) from None


def _evaluate(model_dir: str, out: str, pc: PipelineConfig, log) -> None:
    """``eksft eval`` of one model, laid out by :func:`eval_layout`."""
    from eksft.eval.runner import EvalConfig, evaluate
    from eksft.eval.sampling import SamplingConfig

    e = pc.eval
    sampling = SamplingConfig(
        n=e.n,
        temperature=e.temperature,
        top_p=e.top_p,
        top_k=e.top_k,
        max_new_tokens=e.max_new_tokens,
        batch_size=e.batch_size,
        chat_template=e.chat_template,
    )
    cfg = EvalConfig(
        models=[model_dir],
        benchmarks=list(e.benchmarks),
        output_dir=out,
        ks=list(e.ks),
        sampling=sampling,
        seed=pc.seed,
        backend=e.backend,
        dtype=e.dtype,
        limit=e.limit,
        progress=False,
        data_parallel=eval_layout(pc)[0],
        tensor_parallel=e.tensor_parallel,
    )
    evaluate(cfg, log=lambda text: None)


def _free_memory() -> None:
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_stage(pc: PipelineConfig, method: str, stage: str, train_file: str | None, log=print) -> bool:
    """Run one stage unless its DONE.json exists; True when it ran."""
    out = stage_dir(pc, method, stage)
    if is_done(out):
        log(f"[pipeline] {method}/{stage}: done already, skipped")
        return False
    needs = {"sft_eval": "sft", "rl": "sft", "rl_eval": "rl"}.get(stage)
    if needs and not is_done(stage_dir(pc, method, needs)):
        raise RuntimeError(
            f"pipeline {method}/{stage} needs {method}/{needs}, which has not finished: add "
            f"'{needs}' to `stages` (or run it first)."
        )
    log(f"[pipeline] {method}/{stage}: running")
    start = time.time()
    if stage == "sft":
        _train("train", sft_values(pc, method, train_file), out, pc, log)
    elif stage == "rl":
        _train("rl", rl_values(pc, method, train_file), out, pc, log)
    else:
        model = stage_dir(pc, method, "sft" if stage == "sft_eval" else "rl")
        _evaluate(model, out, pc, log)
    _free_memory()
    seconds = time.time() - start
    mark_done(
        out,
        {
            "method": method,
            "stage": stage,
            "seconds": round(seconds, 1),
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        },
    )
    log(f"[pipeline] {method}/{stage}: finished in {seconds:.1f} s")
    return True


def run_pipeline(pc: PipelineConfig, log=print, only: list[str] | None = None) -> dict:
    """Every method (or the ``only`` ones) through ``pc.stages``, then the report; returns the report's JSON."""
    if only:
        only = [_folder_name(pc, m) for m in only]
        unknown = [m for m in only if m not in pc.methods]
        if unknown:
            raise ValueError(
                f"--methods: {', '.join(unknown)} not in the config's methods "
                f"({', '.join(pc.methods)}); give their folder names or the config's spelling."
            )
    check_eval_layout(pc)
    os.makedirs(pc.output_dir, exist_ok=True)
    train_file = data_file(pc)
    with open(os.path.join(pc.output_dir, "pipeline_config.json"), "w", encoding="utf-8") as f:
        json.dump(
            {
                "source": pc.source,
                "argv": sys.argv,
                "methods": pc.methods,
                "sft": pc.sft,
                "rl": pc.rl,
                "eval": vars(pc.eval),
                "seed": pc.seed,
                "data": vars(pc.data) if pc.data else None,
                "data_file": train_file,
                "stages": pc.stages,
            },
            f,
            indent=2,
            default=str,
        )
    for method in pc.methods:
        if only and method not in only:
            continue
        for stage in pc.stages:
            run_stage(pc, method, stage, train_file, log)
    report = write_report(pc, os.path.join(pc.output_dir, "report"))
    log(f"[pipeline] report: {os.path.join(pc.output_dir, 'report', 'report.md')}")
    return report


def check_stage_folders(pc, log=print) -> None:
    """The output-folder rule of ``eksft train`` for the training stages, before any model loads: a stage folder
    holding a run that this pipeline did not start, or one trained with other settings (its ``config.yaml``), is
    refused; the pipeline's own unfinished stage with the same settings resumes from its newest *complete*
    checkpoint (incomplete ones, cut short by a crash, are removed) or, with none, starts again from a clean folder."""
    from eksft.jobs.output_dir import checkpoints, incomplete_reason, latest_complete, remove_run, run_contents

    train_file = data_file(pc) if any(s in pc.stages for s in ("sft", "rl")) else None
    for method in pc.methods:
        for stage, values_of in (("sft", sft_values), ("rl", rl_values)):
            out = stage_dir(pc, method, stage)
            contents = run_contents(out)
            if stage not in pc.stages or not contents:
                continue
            saved_path = os.path.join(out, "config.yaml")
            if not os.path.isfile(saved_path):
                raise ValueError(
                    f"pipeline stage folder {out!r} holds a run this pipeline did not start "
                    f"({', '.join(contents[:6])}); move it away or choose another output_dir."
                )
            with open(saved_path, encoding="utf-8") as f:
                saved = yaml.safe_load(f) or {}
            now = yaml.safe_load(yaml.safe_dump(values_of(pc, method, train_file), sort_keys=False))
            changed = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
            if changed:
                state = "a finished" if is_done(out) else "an unfinished"
                raise ValueError(
                    f"pipeline stage folder {out!r} holds {state} {method} {stage} run with other settings "
                    f"({', '.join(f'{k}: {saved.get(k)!r} -> {now.get(k)!r}' for k in changed[:5])}); rerunning "
                    "would mix them. Restore those settings, choose another output_dir, or delete that folder."
                )
            if is_done(out):
                continue
            complete = latest_complete(out)
            for c in checkpoints(out):  # newer than the newest complete one: cut short by a crash, unusable
                if c == complete:
                    break
                log(f"[pipeline] {out}: removing {os.path.basename(c)} ({incomplete_reason(c)})")
                remove_run(out, [os.path.basename(c)])
            if complete is None:  # crashed before its first checkpoint: the stage starts again, in a clean folder
                log(f"[pipeline] {out}: no complete checkpoint; the stage starts again")
                remove_run(out)


def _folder_name(pc: PipelineConfig, name: str) -> str:
    """A method as the config writes it (``eksft[rho=0.1]``) -> its folder name (``eksft__rho-0.1``)."""
    if name in pc.methods:
        return name
    from eksft.methods import parse_method

    try:
        return parse_method(name, "--methods").slug
    except ValueError:
        return name
