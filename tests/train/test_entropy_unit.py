"""The entropy unit of lambda_entropy through the trainer (CPU, tiny random Llama, seconds): the config field reaches
the loss on both paths, the effective per-nat weight is logged, and an impossible combination fails at config time."""

from __future__ import annotations

import json
import math

import pytest

from eksft.train import build_trainer


def logged(cfg) -> tuple[list[dict], int]:
    """The metrics lines that carry the per-nat weight, and the policy's vocabulary size."""
    trainer = build_trainer(cfg)
    trainer.train()
    with open(f"{cfg.output_dir}/metrics.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f if "lambda_entropy_per_nat" in line], trainer.model.config.vocab_size


@pytest.mark.parametrize("implementation", ["fused", "logits"])
@pytest.mark.parametrize("unit", ["normalized", "nats"])
def test_per_nat_weight_is_logged(make_config, implementation, unit):
    cfg = make_config(loss_implementation=implementation, entropy_unit=unit, lambda_entropy=0.05, max_steps=1)
    lines, vocab = logged(cfg)
    assert lines, "lambda_entropy_per_nat missing from metrics.jsonl"
    expected = 0.05 / math.log(vocab) if unit == "normalized" else 0.05
    assert lines[0]["lambda_entropy_per_nat"] == pytest.approx(expected, rel=1e-6)


def test_official_with_nats_is_refused_before_training(make_config):
    with pytest.raises(ValueError, match="entropy_unit"):
        build_trainer(make_config(variant="official", entropy_unit="nats"))
