"""Shared fixtures for tests/rl: one torch thread (tests/conftest.py) and a fast CPU ``RLConfig`` factory on the
built-in ``tiny-random-llama``."""

from __future__ import annotations

import pytest

from tests.helpers import QUIET_RUN


@pytest.fixture(autouse=True)
def _one_thread(one_thread):  # every test here on one torch thread (tests/conftest.py)
    yield


@pytest.fixture
def make_rl_config(tmp_path):
    """``make_rl_config(**overrides)`` -> a 2-step tiny DAPO config writing under ``tmp_path/rl``."""
    from eksft.rl import RLConfig

    def make(**overrides):
        kw = dict(
            model_name_or_path="tiny-random-llama",
            train_file="synthetic:arithmetic-easy",
            max_samples=8,
            output_dir=str(tmp_path / "rl"),
            max_steps=2,
            num_generations=4,
            per_device_train_batch_size=8,
            max_completion_length=16,
            overlong_buffer_len=4,
            learning_rate=1e-3,
            seed=0,
            **QUIET_RUN,
        )
        kw.update(overrides)
        return RLConfig(**kw)

    return make
