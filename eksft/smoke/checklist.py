"""The checklist a smoke run ends with: one line per stage or setting, each ``ran``, ``replaced``, ``not checked`` or
``failed``, printed and written to ``SMOKE_FOLDER/smoke.json``."""

from __future__ import annotations

import json
import os

STATUSES = ("ran", "replaced", "not checked", "failed")
#: what no CPU smoke run can check, on every checklist
GPU_ONLY = (
    "bf16 kernels and numerics at real sizes",
    "NCCL collectives (the CPU launch uses gloo)",
    "memory and time at the real model size, batch and length",
    "vLLM rollouts and vLLM evaluation on a GPU",
    "flash / SDPA attention kernels of the GPU build",
)


class Checklist:
    def __init__(self, command: str, config: str, folder: str):
        self.command, self.config, self.folder = command, config, folder
        self.items: list[dict] = []
        self.info: dict = {}

    def add(self, status: str, item: str, detail: str) -> None:
        assert status in STATUSES, status
        self.items.append({"item": item, "status": status, "detail": detail})

    def status(self, item: str) -> str | None:
        return next((i["status"] for i in self.items if i["item"] == item), None)

    @property
    def ok(self) -> bool:
        return not any(i["status"] == "failed" for i in self.items)

    def finish(self, gpu: bool, seconds: float) -> str:
        """Add the GPU-only line, write smoke.json, return the printed text."""
        if not gpu:
            self.add("not checked", "GPU only", "; ".join(GPU_ONLY))
        self.info["seconds"] = round(seconds, 1)
        self.info["ok"] = self.ok
        with open(os.path.join(self.folder, "smoke.json"), "w", encoding="utf-8") as f:
            json.dump(
                {"command": self.command, "config": self.config, **self.info, "checklist": self.items},
                f,
                indent=2,
                default=str,
            )
        width = max(len(i["item"]) for i in self.items)
        lines = [f"smoke checklist: {self.command} {self.config} ({seconds:.0f} s; files in {self.folder})"]
        for i in self.items:
            lines.append(f"  [{i['status']:<11}] {i['item']:<{width}}  {i['detail']}")
        verdict = "passed" if self.ok else "FAILED"
        lines.append(f"smoke run {verdict}; checklist also in {os.path.join(self.folder, 'smoke.json')}")
        return "\n".join(lines)


class SmokeFailed(ValueError):
    """A stage of the smoke run failed after the configuration was accepted: one line, exit code 1."""

    exit_code = 1
