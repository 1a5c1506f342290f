"""Shared fixtures for tests/train: tiny data files and an ``EKSFTConfig`` factory on the built-in
``tiny-random-llama`` (2 layers, hidden 32, character vocabulary; CPU, no download)."""

from __future__ import annotations

import json
import random

import pytest
import torch

from eksft.train import EKSFTConfig
from tests.helpers import QUIET_RUN


def arithmetic_records(n: int = 24, seed: int = 0) -> list[dict]:
    r = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = r.randint(2, 99), r.randint(2, 99)
        out.append({"prompt": f"What is {a} + {b}?", "completion": f"{a} + {b} = {a + b}."})
    return out


def write_jsonl(path, records) -> str:
    with open(path, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec) + "\n")
    return str(path)


@pytest.fixture
def data_file(tmp_path):
    return write_jsonl(tmp_path / "train.jsonl", arithmetic_records())


@pytest.fixture
def make_config(tmp_path, data_file):
    """``make_config(**overrides)`` -> a fast CPU config writing under ``tmp_path/run``."""

    def make(**overrides):
        kw = dict(
            model_name_or_path="tiny-random-llama",
            train_file=data_file,
            output_dir=str(tmp_path / "run"),
            max_steps=3,
            per_device_train_batch_size=2,
            gradient_accumulation_steps=1,
            learning_rate=1e-2,
            max_length=64,
            seed=0,
            dataset_num_proc=None,
            **QUIET_RUN,
        )
        kw.update(overrides)
        return EKSFTConfig(**kw)

    return make


def params(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}
