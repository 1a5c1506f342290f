"""Everything GPU-only in one prepared run: the loss head and one training step at real shapes on a CUDA
device, one JSON document out. Sized for about ten minutes on one H100/H200 (``--budget-s`` stops it starting new
runs after that many seconds; what was skipped says so).

    python benchmarks/gpu_check.py --out gpu_check.json        # CUDA, real shapes (prints the JSON too)
    python benchmarks/gpu_check.py --tiny                      # CPU (or GPU) at tiny shapes: the code path, seconds
    python benchmarks/gpu_check.py --T 4096 --d 2560 --precisions bf16_autocast --skip-train-step   # a subset

Needs only torch and transformers (a bare GPU image: no trl, no datasets; ``liger-kernel`` is used when
importable). It imports ``eksft.losses`` and ``eksft.models.head`` (torch only) and the helpers of the sibling
benchmarks ``loss_head.py`` / ``process_memory.py`` / ``gpu_measure.py`` (clock, memory, budget; all standard library
at import), never ``eksft.train``; the JSON records ``imported_trl`` / ``imported_datasets`` at the end, and a
test checks both are false.

1. **Loss head** (``loss_head``): for T in {4096, 16384}, V = 151,936, d in {2560, 4096}, under bf16 autocast and
   in fp32 (fp32 master inputs either way, TF32 off), forward + backward of

   * ``eksft_logits``: ``eksft_loss`` on full policy and reference logits (the logits path);
   * ``eksft_fused``: ``eksft_head_loss`` (the fused head), parity against ``eksft_logits``;
   * ``sft_ce``: plain ``F.cross_entropy`` on full logits;
   * ``sft_fused``: ``fused_head_loss("sft")``, parity against ``sft_ce``;
   * ``liger_flce``: Liger's ``LigerFusedLinearCrossEntropyLoss`` when ``liger_kernel`` is importable, parity
     against ``sft_ce``.

   Inputs as ``loss_head.make_inputs`` (batch 1, a quarter of the positions are prompt, the lm_head weight gets a
   gradient). Per run: median (and all) of ``--repeats`` timed steps after ``--warmup`` untimed ones (CUDA events),
   peak ``torch.cuda.max_memory_allocated`` above the memory held before the run (inputs and the parity reference),
   and parity of the loss and of the hidden-state and weight gradients (max abs and relative L2 difference) against
   the logits path on the first step, where that path fitted. A run that does not fit records ``"status": "oom"``
   and the check continues.
2. **Training step** (``train_step``): a randomly initialised model of Qwen3-4B's shape (36 layers, d 2560, V
   151,936, tied embeddings; no download) in bf16 with gradient checkpointing, AdamW, batch 1 × ``--train-T`` random
   tokens (first quarter prompt). One EKSFT step (frozen bf16 reference backbone forward + policy backbone forward +
   ``eksft_head_loss``) and one SFT step (policy backbone + ``fused_head_loss("sft")``), both through the fused head,
   each followed by gradient clipping and the AdamW step, interleaved for ``--repeats`` rounds after ``--warmup``:
   median step times, their ratio, and peak memory above the memory held before the step. The same pieces
   (``eksft.models.head.backbone_hidden_states`` / ``lm_head_parts``) that the trainer's fused path uses, without
   TRL's Trainer around them.
3. **Scale path** (``scale_path``, benchmarks/scale_path.py, after the training step): a ``--smoke`` run of
   configs/paper/pipeline_qwen3_4b.yaml on the GPU (bf16, real kernels, ZeRO-3 over NCCL), ``eksft eval`` with the
   vLLM backend on a small random model, and 2 steps of ``eksft rl`` with vLLM rollouts, each a CLI subprocess with
   a timeout and its own record (skipped with the reason without CUDA, with ``--tiny``, or without vLLM).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
for _p in (str(HERE), str(HERE.parent)):  # the sibling benchmarks and the eksft package of this checkout
    if _p not in sys.path:
        sys.path.insert(0, _p)

import loss_head  # noqa: E402  (standard library only at import; its step() imports eksft.losses)
from gpu_measure import GB, Budget, Clock, Memory, describe, environment, free, is_oom, parity  # noqa: E402, F401

IMPLS = ("eksft_logits", "eksft_fused", "sft_ce", "sft_fused", "liger_flce")
PARITY = {"eksft_fused": "eksft_logits", "sft_fused": "sft_ce", "liger_flce": "sft_ce"}  # impl -> the logits path
PRECISIONS = ("bf16_autocast", "fp32")
REAL = {"T": [4096, 16384], "V": 151936, "d": [2560, 4096], "train_T": 4096}
TINY = {"T": [64, 128], "V": 512, "d": [32, 48], "train_T": 64}


def qwen3_4b_config(tiny: bool):
    """Qwen3-4B's architecture (config.json of Qwen/Qwen3-4B), or a 2-layer miniature of it with ``tiny``."""
    from transformers import Qwen3Config

    if tiny:
        return Qwen3Config(
            vocab_size=TINY["V"],
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            tie_word_embeddings=True,
            max_position_embeddings=4096,
        )
    return Qwen3Config(
        vocab_size=151936,
        hidden_size=2560,
        intermediate_size=9728,
        num_hidden_layers=36,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        tie_word_embeddings=True,
        max_position_embeddings=40960,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
    )


# ------------------------------------------------------------------------------------------------------ loss head
def make_inputs(T: int, V: int, d: int, device, seed: int = 0):
    """``loss_head.make_inputs``'s tensors (same layout and scales), generated on ``device``."""
    import torch

    g = torch.Generator(device=device).manual_seed(seed)
    kw = dict(generator=g, device=device)
    hidden = torch.randn(1, T, d, **kw).requires_grad_()
    weight = torch.randn(V, d, **kw).mul_(d**-0.5).requires_grad_()
    ref_hidden = torch.randn(1, T, d, **kw)
    ref_weight = torch.randn(V, d, **kw).mul_(d**-0.5)
    labels = torch.randint(0, V, (1, T), **kw)
    labels[:, : T // 4] = -100
    return hidden, weight, ref_hidden, ref_weight, labels


def liger_available() -> str | None:
    try:
        import liger_kernel  # noqa: F401
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss  # noqa: F401
    except Exception:  # noqa: BLE001 - not installed, or no triton / CUDA
        return None
    try:
        from importlib.metadata import version

        return version("liger-kernel")
    except Exception:  # noqa: BLE001
        return "unknown"


def head_step(impl: str, inputs, chunk_size: int) -> float:
    """One forward + backward of ``impl``; returns the loss. The logits-path and fused EKSFT / plain CE steps are
    ``loss_head.step`` itself."""
    hidden, weight, ref_hidden, ref_weight, labels = inputs
    if impl in ("eksft_logits", "eksft_fused"):
        return loss_head.step(impl, *inputs, chunk_size)
    if impl == "sft_ce":
        return loss_head.step("sft_torch", *inputs, chunk_size)
    if impl == "sft_fused":
        from eksft.losses import fused_head_loss

        loss = fused_head_loss("sft", hidden, weight, labels, chunk_size=chunk_size).loss
    elif impl == "liger_flce":
        import torch
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

        # Liger's kernels take one dtype: under bf16 autocast give it bf16 copies (what a bf16 model hands it); the
        # casts are differentiable, so the fp32 inputs still get their gradients.
        bf16 = torch.is_autocast_enabled(hidden.device.type)
        with torch.autocast(hidden.device.type, enabled=False):
            h, w = (hidden.bfloat16(), weight.bfloat16()) if bf16 else (hidden, weight)
            loss = LigerFusedLinearCrossEntropyLoss(ignore_index=-100)(
                w, h[:, :-1].reshape(-1, h.shape[-1]), labels[:, 1:].reshape(-1)
            )
    else:
        raise ValueError(f"unknown implementation {impl!r}; choose from {IMPLS}")
    loss.backward()
    return float(loss.detach())


def run_head_case(T, V, d, precision, impls, args, device, budget) -> list[dict]:
    """Every implementation on one (T, V, d, precision), one after another on the same inputs."""
    import torch

    clock, mem = Clock(device), Memory(device)
    base = {"T": T, "V": V, "d": d, "precision": precision}
    rows, refs = [], {}
    if budget.exhausted():
        return [{**base, "impl": i, "status": "skipped_budget"} for i in impls]
    try:
        inputs = make_inputs(T, V, d, device)
    except Exception as e:  # noqa: BLE001
        free(device)
        return [
            {**base, "impl": i, "status": "oom" if is_oom(e) else "error", "error": "inputs: " + describe(e)}
            for i in impls
        ]
    hidden, weight = inputs[0], inputs[1]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16_autocast")
    for impl in impls:
        row = {**base, "impl": impl}
        rows.append(row)
        if impl == "liger_flce" and not args.liger:
            row["status"] = "unavailable"  # liger-kernel not importable here
            continue
        if budget.exhausted():
            row["status"] = "skipped_budget"
            continue
        hidden.grad = weight.grad = None
        mem.start()
        row["held_before_gb"] = mem.held_gb()
        times = []
        try:
            for i in range(args.warmup + args.repeats):
                hidden.grad = weight.grad = None
                with autocast:
                    ms, loss = clock.time(lambda impl=impl, inputs=inputs: head_step(impl, inputs, args.chunk_size))
                if i == 0:  # the first step's loss and gradients: parity (kept only while this case runs)
                    first = {
                        "loss": loss,
                        "grad_hidden": hidden.grad.detach().clone(),
                        "grad_weight": weight.grad.detach().clone(),
                    }
                    if impl in PARITY.values():
                        refs[impl] = first
                    if impl in PARITY:
                        against = PARITY[impl]
                        row["parity"] = (
                            {"against": against, **parity(first, refs[against])}
                            if against in refs
                            else {"against": against, "status": "reference_not_run"}
                        )
                if i >= args.warmup:
                    times.append(ms)
        except Exception as e:  # noqa: BLE001 - out of memory (or a broken optional kernel): record it, go on
            row.update(status="oom" if is_oom(e) else "error", error=describe(e), steps_done=len(times))
            hidden.grad = weight.grad = None
            free(device)
            continue
        row.update(
            status="ok",
            loss=loss,
            time_ms=round(statistics.median(times), 3),
            times_ms=[round(t, 3) for t in times],
            peak_above_start_gb=mem.peak_above_start_gb(),
        )
        hidden.grad = weight.grad = None
    del inputs, hidden, weight, refs
    free(device)
    return rows


def head_ratios(rows: list[dict]) -> list[dict]:
    """Per (T, d, precision): time and memory of each implementation over the logits paths."""
    cases = {}
    for r in rows:
        cases.setdefault((r["T"], r["d"], r["precision"]), {})[r["impl"]] = r
    out = []
    for (T, d, precision), by in cases.items():
        ok = {k: v for k, v in by.items() if v.get("status") == "ok"}

        def ratio(a, b, key):
            x, y = ok.get(a, {}).get(key), ok.get(b, {}).get(key)
            return round(x / y, 3) if x is not None and y else None

        out.append(
            {
                "T": T,
                "d": d,
                "precision": precision,
                "eksft_fused_over_logits_time": ratio("eksft_fused", "eksft_logits", "time_ms"),
                "eksft_fused_over_logits_memory": ratio("eksft_fused", "eksft_logits", "peak_above_start_gb"),
                "eksft_fused_over_sft_ce_time": ratio("eksft_fused", "sft_ce", "time_ms"),
                "eksft_fused_over_sft_ce_memory": ratio("eksft_fused", "sft_ce", "peak_above_start_gb"),
                "eksft_fused_over_sft_fused_time": ratio("eksft_fused", "sft_fused", "time_ms"),
                "sft_fused_over_sft_ce_time": ratio("sft_fused", "sft_ce", "time_ms"),
                "eksft_fused_over_liger_time": ratio("eksft_fused", "liger_flce", "time_ms"),
                "eksft_fused_over_liger_memory": ratio("eksft_fused", "liger_flce", "peak_above_start_gb"),
                "status": {k: v.get("status") for k, v in by.items()},
            }
        )
    return out


# --------------------------------------------------------------------------------------------------- train step
def build_models(tiny: bool, device):
    """(policy, frozen reference copy): random init of Qwen3-4B's shape in bf16 on ``device``, checkpointing on."""
    import torch
    from transformers import Qwen3ForCausalLM

    torch.manual_seed(0)
    with torch.device(device):
        policy = Qwen3ForCausalLM._from_config(qwen3_4b_config(tiny), dtype=torch.bfloat16)
    policy.to(device)  # a no-op when the device context was honoured
    policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    policy.config.use_cache = False
    policy.train()
    ref = copy.deepcopy(policy).eval().requires_grad_(False)
    return policy, ref


def train_step_check(args, device, budget) -> dict:
    import torch

    from eksft.losses import eksft_head_loss, fused_head_loss
    from eksft.models.head import backbone_hidden_states, lm_head_parts

    T = args.train_T
    info = {
        "model": "Qwen3-4B shape, random init" if not args.tiny else "Qwen3 miniature (2 layers, d 64), random init",
        "batch": 1,
        "seq_len": T,
        "dtype": "bfloat16",
        "autocast": "bf16",
        "gradient_checkpointing": True,
        "optimizer": "torch AdamW (lr 1e-5), grad clip 1.0",
        "loss_head": "fused",
    }
    if budget.exhausted():
        return {**info, "status": "skipped_budget"}
    mem, clock = Memory(device), Clock(device)
    try:
        t0 = time.perf_counter()
        policy, ref = build_models(args.tiny, device)
        info["parameters"] = sum(p.numel() for p in policy.parameters())
        info["build_s"] = round(time.perf_counter() - t0, 1)
        opt = torch.optim.AdamW(policy.parameters(), lr=1e-5)
        g = torch.Generator(device=device).manual_seed(0)
        ids = torch.randint(0, policy.config.vocab_size, (1, T), generator=g, device=device)
        labels = ids.clone()
        labels[:, : T // 4] = -100
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        parts, ref_parts = lm_head_parts(policy), lm_head_parts(ref)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16)

        def step(method):
            with autocast:
                if method == "eksft":
                    with torch.no_grad():
                        ref_hidden = backbone_hidden_states(ref, **batch)
                    hidden = backbone_hidden_states(policy, **batch)
                    loss = eksft_head_loss(
                        hidden, parts.weight, labels, ref_hidden, ref_parts.weight, **parts.head_kwargs(ref_parts)
                    ).loss
                else:
                    hidden = backbone_hidden_states(policy, **batch)
                    loss = fused_head_loss("sft", hidden, parts.weight, labels, **parts.head_kwargs()).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            return float(loss.detach())

        times, peaks, losses = {"sft": [], "eksft": []}, {"sft": [], "eksft": []}, {}
        for rnd in range(args.warmup + args.repeats):
            if budget.exhausted() and rnd > args.warmup:
                info["stopped_by_budget_after_rounds"] = rnd
                break
            for method in ("sft", "eksft") if rnd % 2 == 0 else ("eksft", "sft"):  # alternate who goes first
                mem.start()
                ms, losses[method] = clock.time(lambda m=method: step(m))
                if rnd >= args.warmup:
                    times[method].append(ms)
                    peaks[method].append(mem.peak_above_start_gb())
                info["held_before_step_gb"] = mem.held_gb()  # weights, AdamW state, the reference
    except Exception as e:  # noqa: BLE001 - one prepared run: report, never lose the rest of the document
        info.update(status="oom" if is_oom(e) else "error", error=describe(e))
        return info
    finally:
        policy = ref = opt = None  # noqa: F841
        free(device)
    out = {**info, "status": "ok"}
    for m in ("sft", "eksft"):
        out[m] = {
            "time_ms": round(statistics.median(times[m]), 2) if times[m] else None,
            "times_ms": [round(t, 2) for t in times[m]],
            "loss": losses.get(m),
            "peak_above_start_gb": max((p for p in peaks[m] if p is not None), default=None),
        }
    s, e = out["sft"], out["eksft"]
    out["eksft_over_sft_time"] = round(e["time_ms"] / s["time_ms"], 3) if s["time_ms"] and e["time_ms"] else None
    out["eksft_over_sft_memory"] = (
        round(e["peak_above_start_gb"] / s["peak_above_start_gb"], 3)
        if e["peak_above_start_gb"] and s["peak_above_start_gb"]
        else None
    )
    return out


# ----------------------------------------------------------------------------------------------------------- run
def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--tiny",
        action="store_true",
        help="tiny shapes (T 64/128, V 512, d 32/48; a 2-layer Qwen3): checks the code path on CPU in seconds",
    )
    p.add_argument("--out", help="also write the JSON document to this file")
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--T", type=int, nargs="+", help="loss-head sequence lengths (default 4096 16384; tiny 64 128)")
    p.add_argument("--d", type=int, nargs="+", help="loss-head hidden sizes (default 2560 4096; tiny 32 48)")
    p.add_argument("--V", type=int, help="vocabulary size (default 151936; tiny 512)")
    p.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    p.add_argument(
        "--implementations",
        "--impl",
        dest="impls",
        nargs="+",
        choices=IMPLS,
        default=list(IMPLS),
        help="loss-head implementations (liger_flce only runs when liger-kernel imports)",
    )
    p.add_argument("--train-T", dest="train_T", type=int, help="training-step tokens (default 4096; tiny 64)")
    p.add_argument("--skip-loss-head", action="store_true")
    p.add_argument("--skip-train-step", action="store_true")
    p.add_argument("--skip-scale-path", action="store_true", help="no pipeline smoke / vLLM eval / vLLM rl runs")
    p.add_argument("--work-dir", default=None, help="scale-path files (default: next to --out, else a temp folder)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 2; tiny 1)")
    p.add_argument("--repeats", type=int, default=None, help="timed steps, median reported (default 5; tiny 2)")
    p.add_argument("--chunk-size", type=int, default=None, help="fused head rows per block (default: the library's)")
    p.add_argument(
        "--budget-s",
        type=float,
        default=540.0,
        help="start no new run after this many seconds (the rest is reported as skipped_budget); default 540 = 9 min",
    )
    args = p.parse_args(argv)
    shapes = TINY if args.tiny else REAL
    args.T, args.d, args.V = args.T or shapes["T"], args.d or shapes["d"], args.V or shapes["V"]
    args.train_T = args.train_T or shapes["train_T"]
    args.warmup = (1 if args.tiny else 2) if args.warmup is None else args.warmup
    args.repeats = (2 if args.tiny else 5) if args.repeats is None else args.repeats
    if args.repeats < 1 or args.warmup < 0 or args.train_T < 4:
        p.error("need --repeats >= 1, --warmup >= 0, --train-T >= 4")
    return args


def run_scale_path(args, budget) -> dict:
    import tempfile

    from scale_path import scale_path

    skip = "--skip-scale-path" if args.skip_scale_path else ("--tiny" if args.tiny else None)
    work = args.work_dir or (
        os.path.join(os.path.dirname(os.path.abspath(args.out)), "scale_path") if args.out else None
    )
    return scale_path(Path(work or os.path.join(tempfile.gettempdir(), f"gpu_check_{os.getpid()}")), budget, skip)


def main(argv=None) -> dict:
    args = parse(argv)
    import torch

    from eksft.losses.fused import DEFAULT_CHUNK_SIZE

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    args.chunk_size = args.chunk_size or DEFAULT_CHUNK_SIZE
    args.liger = liger_available() if "liger_flce" in args.impls else None
    budget = Budget(args.budget_s)
    doc = {
        "bench": "gpu_check",
        "tiny": args.tiny,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": environment(device, args),
        "settings": {
            "T": args.T,
            "V": args.V,
            "d": args.d,
            "precisions": args.precisions,
            "impls": args.impls,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "chunk_size": args.chunk_size,
            "train_T": args.train_T,
            "budget_s": args.budget_s,
            "timing": "CUDA events" if device.type == "cuda" else "perf_counter",
            "memory": "torch.cuda.max_memory_allocated above the start"
            if device.type == "cuda"
            else "process RSS high-water mark above the start (CPU)",
        },
    }
    head_rows = []
    cases = [(T, d, prec) for prec in args.precisions for T in args.T for d in args.d]
    # bf16 loss head first, then the training step, then fp32: the budget cuts the least important part
    first = [c for c in cases if c[2] == "bf16_autocast"]
    later = [c for c in cases if c[2] != "bf16_autocast"]
    for T, d, prec in first if not args.skip_loss_head else []:
        head_rows += run_head_case(T, args.V, d, prec, args.impls, args, device, budget)
    if not args.skip_train_step:
        doc["train_step"] = train_step_check(args, device, budget)
    doc["scale_path"] = run_scale_path(args, budget)
    for T, d, prec in later if not args.skip_loss_head else []:
        head_rows += run_head_case(T, args.V, d, prec, args.impls, args, device, budget)
    doc["loss_head"] = head_rows
    doc["loss_head_ratios"] = head_ratios(head_rows)
    doc["elapsed_s"] = round(budget.elapsed(), 1)
    doc["budget_exhausted"] = budget.exhausted()
    doc["imported_trl"], doc["imported_datasets"] = (sys.modules.get(m) is not None for m in ("trl", "datasets"))
    text = json.dumps(doc, indent=1)
    print(text, flush=True)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    return doc


if __name__ == "__main__":
    main()
