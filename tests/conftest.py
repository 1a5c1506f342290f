"""Fixtures shared by every test folder."""

from __future__ import annotations

import pytest
import torch

from eksft.compat import quiet_deepspeed_on_cpu

# DeepSpeed (in `dev`) prints a warning to stdout when it falls back to the CPU by itself, and stdout is what some
# tests read (benchmarks' JSON lines); launched processes inherit the setting (tests/train/test_engines.py).
quiet_deepspeed_on_cpu()


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for the module: tiny models run fastest that way, and on a shared 2-core machine more
    threads spin against other jobs (seen: 20-40x slower). Use with ``pytestmark = pytest.mark.usefixtures(...)``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
