"""Loss-head benchmark: peak memory and forward+backward time of the loss head alone.

Each (case, implementation) runs in its own subprocess under an address-space cap (``RLIMIT_AS``), one at a time, so
peak RSS is per run and a run that does not fit fails alone (``"status": "oom"``) and never takes the machine down.
Before a run starts, its memory need is estimated (:func:`estimate_gb`); a run whose estimate exceeds ``--max-gb`` or
the RAM available at that moment is not started and is reported as ``"status": "skipped_over_memory"`` with the
estimate. Prints one JSON line per run and one ``"ratios"`` line per case, measured side by side in this run.

    .venv/bin/python benchmarks/loss_head.py --grid quick       # T=1024, V=49152, d=576: about a minute on 2 cores
    .venv/bin/python benchmarks/loss_head.py --grid target      # T=2048, V=151936, d=2560 (the issue's targets)
    .venv/bin/python benchmarks/loss_head.py --grid issue       # T in {1024, 4096} x V x d (the first target grid)
    .venv/bin/python benchmarks/loss_head.py --grid full        # T in {1024, 2048, 4096} x V x d (also: no flags)
    .venv/bin/python benchmarks/loss_head.py --grid full --estimate-only   # print the memory estimates, run nothing
    .venv/bin/python benchmarks/loss_head.py --T 1024 2048 --V 49152 --d 576 --implementations eksft_fused sft_trl

Implementations (all fp32, inputs: policy and reference hidden states and lm_head weights; the policy's hidden
states and weight get gradients, as in full fine-tuning):

* ``eksft_logits``: ``eksft_loss`` on full ``(B, T, V)`` policy and reference logits (the plain path).
* ``eksft_fused``: ``eksft_head_loss`` (this issue).
* ``sft_fused``: ``fused_head_loss("sft")``, eksft's fused head on the plain cross-entropy (with its per-target
  entropy for the ``entropy_mean`` metric): the like-for-like twin of ``sft_trl``.
* ``sft_torch``: plain ``torch.nn.functional.cross_entropy`` on full logits.
* ``sft_trl``: TRL's own chunked log-prob head (``trl.kernels.ChunkedLogProbFunction``, what ``SFTTrainer``'s default
  loss calls), on the valid rows only (TRL does that on GPU; on CPU it scores every row, which is slower), with the
  per-token entropy ``SFTTrainer`` also asks it for.

Memory is the process's peak RSS (``ru_maxrss``) minus its RSS once the inputs exist: it counts the weight gradient,
which every implementation must produce.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

IMPLS = ("eksft_logits", "eksft_fused", "sft_fused", "sft_torch", "sft_trl")
ALL_T, ALL_V, ALL_D = (1024, 2048, 4096), (49152, 151936), (576, 2560)
#: name -> (T values, V values, d values). ``full`` is also what no flags run.
GRIDS = {
    "quick": ((1024,), (49152,), (576,)),
    "target": ((2048,), (151936,), (2560,)),
    "issue": ((1024, 4096), ALL_V, ALL_D),
    "full": (ALL_T, ALL_V, ALL_D),
}
GB = 1e9


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def available_gb() -> float | None:
    """``MemAvailable`` of /proc/meminfo (what can be allocated now without swapping), or None off Linux."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 / GB
    except OSError:
        pass
    return None


def estimate_gb(T: int, V: int, d: int, impl: str, frozen_head: bool = False, chunk_size: int = 128) -> dict:
    """Rough fp32 memory need of one run, in GB (1e9 bytes): ``inputs`` (what :func:`make_inputs` holds),
    ``above_inputs`` (the loss step's peak above them) and ``total`` (the process's peak RSS, with the interpreter and
    torch). An estimate, not a measurement: its coefficients are fitted to the runs in benchmarks/README.md
    (T=1024/V=49152/d=576 and T=2048/V=151936/d=2560) and err on the high side by up to about 20%.
    """
    f32 = 4
    logits = T * V * f32  # one (T, V) fp32 tensor
    valid = T - T // 4  # make_inputs: a quarter of the positions are prompt
    weight_grad = 0.0 if frozen_head else V * d * f32  # every implementation produces the (V, d) weight gradient
    base = 0.47 if impl == "sft_trl" else 0.25  # interpreter + torch (+ trl) after the warm-up step
    if impl == "eksft_logits":  # policy + reference logits, log-softmaxes, probabilities, their gradient
        above = 6.0 * logits + weight_grad + 0.3 * GB
    elif impl in ("eksft_fused", "sft_fused"):  # a few (chunk, V) blocks, the (N, d) row gradient, statistics
        above = weight_grad + 10 * chunk_size * V * f32 + 4 * T * d * f32 + 0.3 * GB
    elif impl == "sft_torch":  # logits, the log-softmax inside cross_entropy, the logits gradient
        above = 3.0 * logits + weight_grad + 0.3 * GB
    elif impl == "sft_trl":  # TRL's chunk (32,768 rows) holds all valid rows at these T: about two (N, V) blocks
        above = 2.0 * valid * V * f32 + weight_grad + 0.6 * GB
    else:
        raise ValueError(f"`impl` must be one of {IMPLS}, got {impl!r}.")
    inputs = (2 * T * d + 2 * V * d) * f32 + T * 8
    return {
        "inputs": round(inputs / GB, 2),
        "above_inputs": round(above / GB, 2),
        "total": round(base + (inputs + above) / GB, 2),
    }


def make_inputs(T: int, V: int, d: int, seed: int = 0, frozen_head: bool = False):
    """Inputs built in place (no temporaries), so the RSS high-water mark before the run is the inputs' own size."""
    import torch

    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(1, T, d, generator=g).requires_grad_()
    weight = torch.randn(V, d, generator=g).mul_(d**-0.5).requires_grad_(not frozen_head)
    ref_hidden = torch.randn(1, T, d, generator=g)
    ref_weight = torch.randn(V, d, generator=g).mul_(d**-0.5)
    labels = torch.randint(0, V, (1, T), generator=g)
    labels[:, : T // 4] = -100  # a prompt: a quarter of the positions are not scored
    return hidden, weight, ref_hidden, ref_weight, labels


def step(impl: str, hidden, weight, ref_hidden, ref_weight, labels, chunk_size: int) -> float:
    """One forward+backward of the loss head; returns the loss value."""
    import torch
    import torch.nn.functional as F

    from eksft.losses import eksft_head_loss, eksft_loss, fused_head_loss
    from eksft.losses.fused import head_logits

    if impl == "eksft_logits":
        with torch.no_grad():
            ref_logits = head_logits(ref_hidden, ref_weight)
        loss = eksft_loss(head_logits(hidden, weight), labels, ref_logits).loss
    elif impl == "eksft_fused":
        loss = eksft_head_loss(hidden, weight, labels, ref_hidden, ref_weight, chunk_size=chunk_size).loss
    elif impl == "sft_fused":
        loss = fused_head_loss("sft", hidden, weight, labels, chunk_size=chunk_size).loss
    elif impl == "sft_torch":
        logits = head_logits(hidden, weight)
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)
    elif impl == "sft_trl":
        from trl.kernels import ChunkedLogProbFunction
        from trl.trainer.utils import _CHUNKED_LOGPROB_CHUNK_SIZE

        mask = labels[:, 1:] != -100
        logps = ChunkedLogProbFunction.apply(
            hidden[:, :-1][mask],
            weight,
            None,
            labels[:, 1:][mask],
            1.0,
            _CHUNKED_LOGPROB_CHUNK_SIZE,
            None,
            1.0,
            ("log_probs", "entropy"),
        )[0]
        loss = -logps.sum() / mask.sum()
    else:
        raise ValueError(f"`impl` must be one of {IMPLS}, got {impl!r}.")
    loss.backward()
    return float(loss.detach())


def worker(args) -> dict:
    """Runs in the capped subprocess: build inputs, then ``repeats`` timed forward+backward steps."""
    import torch

    torch.manual_seed(0)
    inputs = make_inputs(args.T, args.V, args.d, frozen_head=args.frozen_head)
    hidden, weight = inputs[0], inputs[1]
    # Warm the code paths on a tiny problem so import and first-call costs are not timed or counted.
    tiny = make_inputs(16, 64, 8, seed=1)
    step(args.impl, *tiny, args.chunk_size)
    base_rss, base_peak = rss_bytes(), peak_rss_bytes()
    out = {
        "T": args.T,
        "V": args.V,
        "d": args.d,
        "impl": args.impl,
        "dtype": "float32",
        "frozen_head": args.frozen_head,
        "threads": torch.get_num_threads(),
        "load_avg_1m": os.getloadavg()[0],
    }
    times, cpu = [], []
    try:
        for _ in range(args.repeats):
            hidden.grad = weight.grad = None
            start, cpu_start = time.perf_counter(), cpu_seconds()
            loss = step(args.impl, *inputs, args.chunk_size)
            times.append(time.perf_counter() - start)
            cpu.append(cpu_seconds() - cpu_start)
    except (MemoryError, RuntimeError) as e:  # torch raises RuntimeError("... can't allocate memory ...")
        if "alloc" not in str(e).lower() and not isinstance(e, MemoryError):
            raise
        out.update(status="oom", error=str(e).splitlines()[0][:160], runs_done=len(times))
    else:
        out.update(
            status="ok",
            loss=loss,
            time_s=round(statistics.median(times), 6),
            times_s=[round(t, 6) for t in times],
            cpu_s=round(statistics.median(cpu), 3),
        )  # CPU seconds: less sensitive to other users' load
    out.update(
        peak_above_inputs_gb=round((peak_rss_bytes() - base_rss) / 1e9, 3),
        inputs_rss_gb=round(base_rss / 1e9, 3),
        pre_run_peak_gb=round(base_peak / 1e9, 3),
    )
    return out


def memory_guard(T, V, d, impl, args) -> tuple[dict, dict | None]:
    """(the run's estimate, a ``skipped_over_memory`` line or None): a run is not started when its estimated peak
    exceeds ``--max-gb`` or the RAM available now (other processes' memory counts)."""
    est = estimate_gb(T, V, d, impl, args.frozen_head, args.chunk_size)
    avail = available_gb()
    limit = args.max_gb if avail is None else min(args.max_gb, avail)
    if est["total"] <= limit:
        return est, None
    return est, {
        "T": T,
        "V": V,
        "d": d,
        "impl": impl,
        "frozen_head": args.frozen_head,
        "status": "skipped_over_memory",
        "estimate_gb": est["total"],
        "estimate_above_inputs_gb": est["above_inputs"],
        "max_gb": args.max_gb,
        "available_gb": None if avail is None else round(avail, 2),
    }


def run_case(T, V, d, impl, args) -> dict:
    est, skipped = memory_guard(T, V, d, impl, args)
    if skipped is not None:
        return skipped
    row = _run_subprocess(T, V, d, impl, args)
    row.setdefault("frozen_head", args.frozen_head)
    row["estimate_gb"] = est["total"]
    return row


def _run_subprocess(T, V, d, impl, args) -> dict:
    cap = int((args.mem_cap_gb or args.max_gb) * 1e9)
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        "--T",
        str(T),
        "--V",
        str(V),
        "--d",
        str(d),
        "--impl",
        impl,
        "--repeats",
        str(args.repeats),
        "--chunk-size",
        str(args.chunk_size),
    ]
    cmd += ["--frozen-head"] if args.frozen_head else []
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=args.timeout,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (cap, cap)),
        )
    except subprocess.TimeoutExpired:
        return {"T": T, "V": V, "d": d, "impl": impl, "status": "timeout", "timeout_s": args.timeout}
    except OSError as e:  # the subprocess could not start (e.g. the cap is below what Python needs)
        return {"T": T, "V": V, "d": d, "impl": impl, "status": "error", "error": str(e)[:200]}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["(no stderr)"])[-1][:200]
        killed = proc.returncode in (-9, 137)  # SIGKILL: the kernel's OOM killer (or a cgroup limit)
        oom = killed or "alloc" in tail.lower() or "memoryerror" in tail.lower()
        error = "killed (SIGKILL, out of memory?)" if killed else tail
        return {
            "T": T,
            "V": V,
            "d": d,
            "impl": impl,
            "status": "oom" if oom else "error",
            "returncode": proc.returncode,
            "error": error,
        }
    return json.loads(lines[-1])


def ratios(rows: list[dict]) -> dict:
    """Side-by-side ratios for one case; None where a run failed (the failure is in its own line)."""
    by = {r["impl"]: r for r in rows if r.get("status") == "ok"}

    def ratio(a, b, key):
        return round(by[a][key] / by[b][key], 3) if a in by and b in by and by[b][key] > 0 else None

    r = rows[0]
    return {
        "ratios": True,
        "T": r["T"],
        "V": r["V"],
        "d": r["d"],
        "frozen_head": r.get("frozen_head"),
        "fused_over_logits_memory": ratio("eksft_fused", "eksft_logits", "peak_above_inputs_gb"),
        "fused_over_trl_memory": ratio("eksft_fused", "sft_trl", "peak_above_inputs_gb"),
        "fused_over_trl_time": ratio("eksft_fused", "sft_trl", "time_s"),
        "fused_over_trl_cpu": ratio("eksft_fused", "sft_trl", "cpu_s"),
        "fused_over_logits_time": ratio("eksft_fused", "eksft_logits", "time_s"),
        "sft_fused_over_trl_time": ratio("sft_fused", "sft_trl", "time_s"),
        "sft_fused_over_trl_memory": ratio("sft_fused", "sft_trl", "peak_above_inputs_gb"),
        "trl_over_torch_sft_memory": ratio("sft_trl", "sft_torch", "peak_above_inputs_gb"),
        "fused_over_torch_sft_memory": ratio("eksft_fused", "sft_torch", "peak_above_inputs_gb"),
        "fused_over_torch_sft_time": ratio("eksft_fused", "sft_torch", "time_s"),
        "status": {x["impl"]: x.get("status") for x in rows},
    }


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--grid",
        choices=sorted(GRIDS),
        help="named set of cases: "
        + "; ".join(f"{k}: T={t} V={v} d={d}" for k, (t, v, d) in GRIDS.items())
        + ". Default: full (--T/--V/--d override)",
    )
    p.add_argument("--T", type=int, nargs="+", help="sequence lengths (batch 1); overrides the grid's")
    p.add_argument("--V", type=int, nargs="+", help="vocabulary sizes; overrides the grid's")
    p.add_argument("--d", type=int, nargs="+", help="hidden sizes; overrides the grid's")
    p.add_argument(
        "--implementations",
        "--impl",
        dest="impl",
        nargs="+",
        default=list(IMPLS),
        choices=IMPLS,
        help="implementations to run, in this order (default: all)",
    )
    p.add_argument("--quick", action="store_true", help="same as --grid quick")
    p.add_argument("--target", action="store_true", help="same as --grid target")
    p.add_argument(
        "--repeats", type=int, default=3, help="timed forward+backward steps per run; the median is reported"
    )
    p.add_argument("--chunk-size", type=int, default=128, help="eksft_fused: valid targets per block")
    p.add_argument(
        "--max-gb",
        type=float,
        default=20.0,
        help="skip a run whose estimated peak RSS exceeds this (or "
        "the RAM available when it would start); also the default address-space cap",
    )
    p.add_argument(
        "--mem-cap-gb",
        type=float,
        default=None,
        help='address-space cap of each subprocess (default: --max-gb); a run that hits it reports "status": "oom"',
    )
    p.add_argument("--estimate-only", action="store_true", help="print each run's memory estimate; run nothing")
    p.add_argument("--timeout", type=int, default=7200, help="seconds per subprocess")
    p.add_argument("--frozen-head", action="store_true", help="lm_head weight frozen (LoRA-style): no (V, d) gradient")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    if args.worker:
        args.T, args.V, args.d, args.impl = args.T[0], args.V[0], args.d[0], args.impl[0]
        return args
    grid = args.grid or ("quick" if args.quick else "target" if args.target else "full")
    if sum(bool(x) for x in (args.grid, args.quick, args.target)) > 1:
        p.error("give one of --grid, --quick, --target")
    grid_t, grid_v, grid_d = GRIDS[grid]
    args.T, args.V, args.d = list(args.T or grid_t), list(args.V or grid_v), list(args.d or grid_d)
    return args


def main(argv=None) -> None:
    args = parse(argv)
    from eksft.compat import quiet_deepspeed_on_cpu

    quiet_deepspeed_on_cpu()  # stdout is JSON lines only
    if args.worker:
        print(json.dumps(worker(args)), flush=True)
        return
    for T in args.T:
        for V in args.V:
            for d in args.d:
                if args.estimate_only:
                    for impl in args.impl:
                        est = estimate_gb(T, V, d, impl, args.frozen_head, args.chunk_size)
                        print(
                            json.dumps(
                                {
                                    "T": T,
                                    "V": V,
                                    "d": d,
                                    "impl": impl,
                                    "frozen_head": args.frozen_head,
                                    "status": "estimate",
                                    "estimate_gb": est["total"],
                                    "estimate_above_inputs_gb": est["above_inputs"],
                                    "estimate_inputs_gb": est["inputs"],
                                }
                            ),
                            flush=True,
                        )
                    continue
                rows = []
                for impl in args.impl:  # strictly one subprocess at a time: the machine is shared
                    rows.append(run_case(T, V, d, impl, args))
                    print(json.dumps(rows[-1]), flush=True)
                print(json.dumps(ratios(rows)), flush=True)


if __name__ == "__main__":
    main()
