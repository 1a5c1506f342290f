"""`eksft train configs/demo_cpu.yaml --model_name_or_path smollm2-135m-instruct`: the demo model's alias resolves
to its converted folder (it did not, in `eksft train`, before) and one EKSFT step on the real SmolLM2-135M-Instruct
writes a checkpoint and metrics.jsonl with finite loss terms. CPU, about 25 s (model load dominates)."""

from __future__ import annotations

import json
import math
import os

import pytest

from eksft import cli

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_eksft_train_on_the_demo_model_alias(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "run"
    code = cli.main(
        [
            "train",
            "configs/demo_cpu.yaml",
            "--model_name_or_path",
            "smollm2-135m-instruct",
            "--max_steps",
            "1",
            "--save_steps",
            "1",
            "--logging_steps",
            "1",
            "--eval_strategy",
            "no",
            "--per_device_train_batch_size",
            "2",
            "--gradient_accumulation_steps",
            "1",
            "--learning_rate",
            "1e-5",
            "--report_to",
            "none",
            "--output_dir",
            str(out),
        ]
    )
    assert code in (0, None)
    assert (out / "checkpoint-1").is_dir() and (out / "model.safetensors").is_file()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    step = next(r for r in rows if "entropy_masked_fraction" in r)
    assert math.isfinite(step["loss"]) and math.isfinite(step["ce"]) and step["num_targets"] > 0
    assert 0 < step["masked_fraction"] <= 1
    config = json.loads((out / "config.json").read_text())
    assert config["vocab_size"] == 49152  # SmolLM2's vocabulary: the real model, not the tiny one
