"""Fixtures shared by every test folder."""

from __future__ import annotations

import os

import pytest
import torch

# DeepSpeed (the `deepspeed` extra, in `dev`) prints a warning to stdout when it falls back to the CPU by itself, in
# any test that imports it through transformers / TRL, and stdout is what some tests read (benchmarks' JSON lines).
# Naming the CPU accelerator is silent; launched processes inherit it (tests/train/test_engines.py).
if not torch.cuda.is_available():
    os.environ.setdefault("DS_ACCELERATOR", "cpu")


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for the module: tiny models run fastest that way, and on a shared 2-core machine more
    threads spin against other jobs (seen: 20-40x slower). Use with ``pytestmark = pytest.mark.usefixtures(...)``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
