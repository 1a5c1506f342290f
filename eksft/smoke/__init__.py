"""``--smoke``: run a configuration of ``eksft train``, ``eksft rl`` or ``eksft pipeline`` on a tiny model in minutes,
before the GPU queue and the model download (docs/training.md, "Smoke-running a config before the GPU queue").

The same configuration with every field kept, except (transform.py): the model becomes a random model of the same
architecture at tiny sizes (model.py), the data the configured file's first records or a stand-in with the configured
columns (data.py), lengths are capped, training takes 2 optimiser steps with a checkpoint each and a resume check,
evaluation 4 problems x 2 samples per benchmark, RL 2 steps with dynamic sampling. The engine stays: a ``launcher``,
``deepspeed:`` or FSDP config runs as 2 CPU processes through :mod:`eksft.cpu_launch` (engine.py). Everything is
written to ``OUTPUT_DIR-smoke`` (never the configured output folder), which ends with ``smoke.json``: the checklist
of what ran, was replaced or was not checked (checklist.py), and the real model's size and per-GPU memory estimate
when its ``config.json`` is at hand.
"""

from __future__ import annotations

from .checklist import Checklist, SmokeFailed
from .pipeline import smoke_pipeline
from .run import check_ok, smoke_job

__all__ = ["Checklist", "SmokeFailed", "check_ok", "smoke_job", "smoke_pipeline"]
