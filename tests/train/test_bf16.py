"""bf16 mixed precision on CPU (``bf16=True, use_cpu=True``: accelerate's CPU autocast), EKSFT on the fused and the
logits path: the loss is finite, the model really ran in bf16 (the loss differs from fp32), the reference runs under
the same autocast (first step: policy = reference, so every KL is exactly 0 and M_KL is empty, docs/losses.md EKSFT
step 3), and the statistics are computed in fp32: the logged entropy mean matches the fp32 run's far more closely than
bf16's spacing near log V (2^-5 = 0.031) would allow if it were computed in bf16."""

from __future__ import annotations

import math

import pytest

from eksft.jobs.metrics import read_metrics
from eksft.train import build_trainer


def run(make_config, tmp_path, name, **overrides):
    cfg = make_config(
        loss_type="eksft",
        rho=0.3,
        lambda_kl=0.5,
        max_steps=2,
        per_device_train_batch_size=4,
        use_cpu=True,
        output_dir=str(tmp_path / name),
        **overrides,
    )
    trainer = build_trainer(cfg)
    trainer.train()
    return trainer, [r for r in read_metrics(cfg.output_dir) if "train_runtime" not in r]


def test_bf16_fused_and_logits_paths(make_config, tmp_path):
    _, fp32 = run(make_config, tmp_path, "fp32", bf16=False, loss_implementation="logits")
    for impl in ("fused", "logits"):
        trainer, bf16 = run(make_config, tmp_path, impl, bf16=True, loss_implementation=impl)
        assert trainer.accelerator.mixed_precision == "bf16" and trainer.loss_implementation == impl
        assert [r["step"] for r in bf16] == [1, 2] and all(math.isfinite(r["loss"]) for r in bf16)
        first, want = bf16[0], fp32[0]
        assert first["loss"] != want["loss"]  # autocast changed the numbers: this really was a bf16 forward
        assert first["kl_mean"] == 0.0 and first["kl_masked_fraction"] == 0.0
        assert first["num_targets"] == want["num_targets"]
        for k in ("loss", "ce", "entropy_mean", "entropy_threshold", "masked_fraction"):
            assert first[k] == pytest.approx(want[k], rel=1e-3), (impl, k)
        second = bf16[1]  # after one bf16 step the policies differ a little; KL is no longer 0
        assert second["entropy_mean"] == pytest.approx(fp32[1]["entropy_mean"], abs=2e-3), impl
        assert second["kl_mean"] > 0 and second["kl_mean"] == pytest.approx(fp32[1]["kl_mean"], rel=5e-2), impl
        assert second["loss"] == pytest.approx(fp32[1]["loss"], rel=2e-2), impl
