"""The demo's stage lines: one ``=== [demo] ...`` line per stage, and the machine's load average sampled at each
(the report states the highest, so a slow run on a shared machine says so)."""

from __future__ import annotations

import os

#: 1-minute load averages sampled at every stage of the current run (the report states the highest).
LOADS: list[float] = []


def log_stage(log, text: str) -> None:
    LOADS.append(os.getloadavg()[0])
    log(f"=== [demo] {text}")
