"""Shared fixtures for tests/pipeline: one torch thread (the test machine is shared; oversubscription makes tiny
models many times slower)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
