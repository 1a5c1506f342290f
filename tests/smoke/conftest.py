"""Every test in tests/smoke runs on one torch thread (tests/conftest.py says why), from the repository root: the
paper configs name ``configs/ds_zero3.json`` relative to it."""

import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAPER = os.path.join(ROOT, "configs", "paper")


@pytest.fixture(autouse=True)
def _one_thread_at_root(one_thread, monkeypatch):
    monkeypatch.chdir(ROOT)
    yield
