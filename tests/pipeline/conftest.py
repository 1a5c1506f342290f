"""Every test in tests/pipeline runs on one torch thread (tests/conftest.py says why)."""

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield
