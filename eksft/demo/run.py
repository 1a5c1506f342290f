"""The demo, stage by stage: data → train each method → evaluate every model → held-out entropy/KL → drift →
mask statistics → token heat map → report. Each stage writes into ``output_dir`` and a rerun skips what is done.

Everything is built from the project's public pieces (``eksft.train``, ``eksft.eval``, ``eksft.analysis``,
``eksft.losses``); the demo adds only orchestration and the report.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch

from eksft.data.synthetic import INSTRUCTION, training_records

from .config import BASE, WARM, DemoConfig
from .report import write_report
from .stages import LOADS, log_stage
from .training import train_method


def prepare_data(cfg: DemoConfig, out: Path) -> tuple[Path, list[dict]]:
    """Training records as chat messages (so TRL applies the same chat template as evaluation) and held-out worked
    solutions that are neither trained on nor in the evaluation set (the generator excludes evaluation problems)."""
    records = training_records(cfg.task, cfg.train_size + cfg.heldout_solutions)
    train, heldout = records[: cfg.train_size], records[cfg.train_size :]  # training_records has no repeats
    path = out / "data" / "train.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for r in train:
            msgs = [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["completion"]}]
            f.write(json.dumps({"messages": msgs}) + "\n")
    (out / "data" / "heldout.jsonl").write_text("".join(json.dumps(r) + "\n" for r in heldout))
    return path, heldout


@torch.no_grad()
def heldout_statistics(base: str, models: dict[str, str], heldout: list[dict]) -> dict[str, dict]:
    """Per model: mean NLL, mean token entropy and mean KL(model ‖ base) over the response tokens of held-out worked
    solutions (teacher-forced). Uses ``eksft_loss`` with ρ = 0 purely for its fp32 statistics."""
    from eksft.analysis.probe import build_inputs
    from eksft.losses import eksft_loss
    from eksft.models.loading import load_model, load_tokenizer

    tok = load_tokenizer(base)
    inputs = [
        build_inputs(tok, r["problem"], r["completion"], instruction=INSTRUCTION, chat_template=True) for r in heldout
    ]
    base_model = load_model(base, dtype="float32", device="cpu")
    base_logits = [base_model(ids).logits for ids, _ in inputs]
    del base_model
    out = {}
    for label, path in models.items():
        model = load_model(path, dtype="float32", device="cpu") if path != base else None
        per_solution = {"nll": [], "entropy": [], "kl": [], "tokens": []}  # the means and their intervals
        for (ids, labels), ref in zip(inputs, base_logits):
            logits = model(ids).logits if model is not None else ref
            m = eksft_loss(logits, labels, ref, rho=0.0).metrics
            for key, metric in (
                ("nll", "ce"),
                ("entropy", "entropy_mean"),
                ("kl", "kl_mean"),
                ("tokens", "num_targets"),
            ):
                per_solution[key].append(m[metric])
        tokens = per_solution["tokens"]
        means = {
            key: sum(v * k for v, k in zip(per_solution[key], tokens)) / max(sum(tokens), 1)
            for key in ("nll", "entropy", "kl")
        }  # token-weighted: per token over all solutions
        out[label] = {**means, "per_solution": per_solution}
        del model
    return out


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def peak_rss_gb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux reports KiB


def run_seed(cfg: DemoConfig, base: str, seed: int, out: Path, train_file: Path, heldout: list[dict], log) -> dict:
    from eksft.eval.runner import EvalConfig, evaluate
    from eksft.eval.sampling import SamplingConfig

    sd = out / f"seed{seed}"
    # The model every method starts from (and the evaluation's reference): the base model, or in the self data
    # regime the warm start, continued on its own verified answers (selftrace.py).
    start_model, start_label, default_steps, train_size, regime = base, BASE, cfg.lengths[0], cfg.train_size, {}
    if cfg.data_regime == "self":
        from .selftrace import warm_start_and_traces

        exclude = training_records(cfg.task, cfg.train_size + cfg.heldout_solutions)  # prepare_data's records
        start_model, train_file, warm, traces = warm_start_and_traces(cfg, base, seed, sd, train_file, exclude, log)
        start_label, default_steps, train_size = WARM, cfg.continue_steps, traces["kept_traces"]
        regime = {"warm": warm, "traces": {**traces, "file": str(train_file)}}
    runs = {}
    for method in cfg.expanded_methods():
        steps = method.steps or default_steps
        what = "training" if start_model == base else "continuing"
        log_stage(log, f"seed {seed}: {what} {method.label} ({steps} steps x {cfg.batch_size} sequences)")
        runs[method.label] = train_method(
            cfg,
            start_model,
            method,
            seed,
            sd / method.slug,
            train_file,
            log,
            steps=default_steps,
            train_size=train_size,
        )
    models = {start_label: start_model, **{m: r["run_dir"] for m, r in runs.items()}}

    log_stage(log, f"seed {seed}: sampling {cfg.samples} answers to {cfg.eval_problems} held-out problems per model")
    sampling = SamplingConfig(n=cfg.samples, temperature=1.0, max_new_tokens=cfg.max_new_tokens, batch_size=128)
    ecfg = EvalConfig(
        models=list(models.values()),
        benchmarks=[cfg.task],
        output_dir=str(sd / "eval"),
        ks=cfg.ks,
        sampling=sampling,
        seed=seed,
        dtype="float32",
        limit=cfg.eval_problems,
        offset=cfg.eval_offset,
        backend="hf",
    )
    began = time.time()
    results = evaluate(ecfg, log=log)[cfg.task]
    eval_seconds = time.time() - began
    by_label = {label: results[path] for label, path in models.items()}

    log_stage(log, f"seed {seed}: entropy and KL to the {start_label} model on {len(heldout)} held-out solutions")
    heldout_stats = heldout_statistics(start_model, models, heldout)

    drift = None
    if Path(start_model).is_dir():
        from eksft.analysis.drift import compute_drift, plot_drift

        log_stage(log, f"seed {seed}: parameter drift")
        report = compute_drift(start_model, [r["run_dir"] for r in runs.values()])
        drift = {m: report[name]["share_above"] for m, name in zip(runs, report)}
        if (
            seed == cfg.first_seed
        ):  # the report shows the first seed's histogram; the numbers of every seed are in report.json
            (out / "drift").mkdir(exist_ok=True)
            plot_drift(report, out / "drift")
    return {
        "seed": seed,
        "models": models,
        "runs": runs,
        "eval": by_label,
        "heldout": heldout_stats,
        "drift": drift,
        "eval_seconds": eval_seconds,
        **regime,
    }


def run_demo(cfg: DemoConfig, log=print) -> dict:
    """Run the whole demo; return the summary that ``report.json`` holds."""
    from eksft.models.smollm import resolve_model_path

    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    start = time.time()
    LOADS[:] = [os.getloadavg()[0]]
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    log_stage(log, f"model {cfg.model}")
    base = resolve_model_path(cfg.model)
    train_file, heldout = prepare_data(cfg, out)
    log(f"[demo] {cfg.train_size} training records of {cfg.task} -> {train_file}; {len(heldout)} held-out solutions")
    seeds = [
        run_seed(cfg, base, s, out, train_file, heldout, log) for s in range(cfg.first_seed, cfg.first_seed + cfg.seeds)
    ]

    first = seeds[0]
    log_stage(log, "token heat map of one held-out solution under each model")
    from eksft.analysis.probe import run_probe

    sample = heldout[0]
    run_probe(
        list(first["models"].values()),
        sample["problem"],
        sample["completion"],
        out / "probe",
        instruction=INSTRUCTION,
        chat_template=True,
        rho=cfg.rho,
    )
    masked_runs = [r["run_dir"] for r in first["runs"].values() if r.get("loss_type") in ("eksft", "random_mask")]
    if masked_runs:
        from eksft.analysis.masks import run_masks

        log_stage(log, "mask statistics of the EKSFT run")
        run_masks(masked_runs, out / "masks")
    summary = {
        "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
        "base_model": base,
        "machine": machine(),
        "wall_seconds": time.time() - start,
        # models an earlier invocation trained into this folder: this invocation's wall time leaves them out
        "resumed_trainings": sum(bool(r.get("resumed")) for s in seeds for r in s["runs"].values()),
        "peak_rss_gb": peak_rss_gb(),
        "load_average": [LOADS[0], max(LOADS), os.getloadavg()[0]],  # start, highest at a stage, end
        "seeds": seeds,
    }
    # The raw numbers first, so a report can be re-rendered from them (eksft.demo.report.rerender) whatever happens.
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    paths = write_report(summary, out)
    log_stage(log, f"done in {summary['wall_seconds'] / 60:.1f} min; report: {paths[0]} and {paths[1]}")
    return summary
