"""The generic measuring helpers of ``gpu_check.py``: a clock (CUDA events or perf_counter), peak memory above a
start (``torch.cuda.max_memory_allocated``, or the process RSS high-water mark on CPU through
``process_memory.py``), out-of-memory classification, loss / gradient parity, the time budget and the environment
record.
Standard library only at import (plus the siblings ``loss_head`` / ``process_memory``, the same); torch inside."""

from __future__ import annotations

import gc
import platform
import time

import loss_head  # standard library only at import
import process_memory  # standard library only

GB = loss_head.GB


class Clock:
    """CUDA events on a GPU (the device's own time), perf_counter on CPU; milliseconds."""

    def __init__(self, device):
        import torch

        self.cuda = device.type == "cuda"
        self.torch = torch

    def time(self, fn):
        torch = self.torch
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end), out
        t = time.perf_counter()
        out = fn()
        return (time.perf_counter() - t) * 1e3, out


class Memory:
    """Peak memory of what runs between ``start()`` and ``peak_above_start_gb()``: ``torch.cuda.max_memory_allocated``
    on a GPU; on CPU the process RSS high-water mark (``process_memory``), None where it cannot be reset."""

    def __init__(self, device):
        import torch

        self.cuda, self.torch, self.base = device.type == "cuda", torch, None

    def start(self):  # no gc.collect() here: with transformers loaded it takes ~0.3 s a call
        if self.cuda:
            self.torch.cuda.synchronize()
            self.torch.cuda.empty_cache()
            self.torch.cuda.reset_peak_memory_stats()
            self.base = self.torch.cuda.memory_allocated() / GB
        else:
            reset, rss = process_memory.reset_peak_rss(), process_memory.rss_gb()
            self.base = rss if reset and rss is not None else None

    def peak_above_start_gb(self):
        if self.base is None:
            return None
        peak = self.torch.cuda.max_memory_allocated() / GB if self.cuda else process_memory.hwm_gb()
        return round(max(0.0, peak - self.base), 3)

    def held_gb(self):
        held = self.torch.cuda.memory_allocated() / GB if self.cuda else process_memory.rss_gb()
        return None if held is None else round(held, 3)


def is_oom(e: BaseException) -> bool:
    import torch

    return isinstance(e, (torch.cuda.OutOfMemoryError, MemoryError)) or "alloc" in str(e).lower()


def describe(e: BaseException) -> str:
    lines = str(e).strip().splitlines() or [""]
    return f"{type(e).__name__}: {lines[0][:200]}"


def free(device):
    """Between cases (and after an out-of-memory error): give cached CUDA blocks back."""
    import torch

    if device.type == "cuda":
        gc.collect()  # tensors an exception's traceback kept alive in reference cycles
        torch.cuda.empty_cache()


def parity(got: dict, ref: dict) -> dict:
    """Loss and gradient differences of one implementation's first step against its logits-path reference."""

    def rel(a, b):
        return float((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-30))

    return {
        "loss_abs_diff": abs(got["loss"] - ref["loss"]),
        "loss_rel_diff": abs(got["loss"] - ref["loss"]) / max(abs(ref["loss"]), 1e-30),
        "grad_hidden_max_abs_diff": float((got["grad_hidden"].float() - ref["grad_hidden"].float()).abs().max()),
        "grad_hidden_rel_l2": rel(got["grad_hidden"], ref["grad_hidden"]),
        "grad_weight_max_abs_diff": float((got["grad_weight"].float() - ref["grad_weight"].float()).abs().max()),
        "grad_weight_rel_l2": rel(got["grad_weight"], ref["grad_weight"]),
    }


class Budget:
    def __init__(self, seconds: float):
        self.start, self.seconds = time.perf_counter(), seconds

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def exhausted(self) -> bool:
        return self.elapsed() > self.seconds


def environment(device, args) -> dict:
    import torch
    import transformers

    env = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "liger_kernel": args.liger,
        "python": platform.python_version(),
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "threads": torch.get_num_threads(),
    }
    try:
        import triton

        env["triton"] = triton.__version__
    except Exception:  # noqa: BLE001
        env["triton"] = None
    if device.type == "cuda":
        env["gpu_memory_gb"] = round(torch.cuda.get_device_properties(device).total_memory / GB, 1)
    return env
