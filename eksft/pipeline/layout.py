"""Where the pipeline's stages live under ``output_dir`` and when one counts as finished (run.py writes them,
report.py reads them): ``<output_dir>/<method>/<stage>/``, finished when its ``DONE.json`` marker exists."""

from __future__ import annotations

import json
import os

from .config import PipelineConfig

DONE = "DONE.json"


def stage_dir(pc: PipelineConfig, method: str, stage: str) -> str:
    return os.path.join(pc.output_dir, method, stage)


def is_done(path: str) -> bool:
    return os.path.isfile(os.path.join(path, DONE))


def mark_done(path: str, info: dict) -> None:
    tmp = os.path.join(path, DONE + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2)
    os.replace(tmp, os.path.join(path, DONE))  # atomic: the marker is whole or absent
