"""Logging, resume and failure (CPU, tiny random Llama): metrics.jsonl has one object per logging step with the loss
functions' metric names, weighted by num_targets, plus loss/learning_rate/epoch and eval_* lines; TensorBoard event
files get the same scalars; --resume_from_checkpoint continues on the uninterrupted run's loss trajectory; a NaN
stops training with a message naming the step and the last good checkpoint."""

from __future__ import annotations

import glob
import math

import pytest
from transformers import TrainerCallback

from eksft.jobs.metrics import read_metrics
from eksft.losses.eksft import EKSFT_METRICS
from eksft.train import TrainingDiverged, build_trainer
from eksft.train.step_log import MetricAccumulator
from tests.helpers import StopAt


def test_metrics_jsonl_and_tensorboard(make_config, tmp_path):
    cfg = make_config(
        loss_type="eksft",
        max_steps=4,
        logging_steps=2,
        report_to=["tensorboard"],
        eval_split_size=0.25,
        eval_strategy="steps",
        eval_steps=4,
    )
    trainer = build_trainer(cfg)
    trainer.train()
    rows = read_metrics(cfg.output_dir)
    train_rows = [r for r in rows if "loss" in r]
    assert [r["step"] for r in train_rows] == [2, 4]
    for r in train_rows:
        for name in (set(EKSFT_METRICS) - {"loss"}) | {"loss", "learning_rate", "epoch"}:
            assert name in r, name
        assert 0.0 < r["masked_fraction"] < 1.0 and r["num_targets"] > 0
    evals = [r for r in rows if "eval_loss" in r]
    assert evals and "eval_masked_fraction" in evals[0] and evals[0]["step"] == 4

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = glob.glob(f"{cfg.output_dir}/**/events.out.tfevents.*", recursive=True)
    assert files
    acc = EventAccumulator(files[0])
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"train/masked_fraction", "train/iou_entropy_kl", "train/loss", "train/learning_rate"} <= set(tags)
    values = [e.value for e in acc.Scalars("train/masked_fraction")]
    assert values == pytest.approx([r["masked_fraction"] for r in train_rows], rel=1e-6)


def test_metric_accumulator_weights_by_num_targets():
    acc = MetricAccumulator()
    acc.add({"masked_fraction": 0.5, "num_targets": 10.0, "loss": 9.0})
    acc.add({"masked_fraction": 0.2, "num_targets": 30.0, "loss": 1.0})
    out = acc.summary()
    assert out["masked_fraction"] == pytest.approx((0.5 * 10 + 0.2 * 30) / 40)
    assert out["num_targets"] == 40.0 and "loss" not in out


def test_resume_follows_the_same_trajectory(make_config, tmp_path):
    kw = dict(loss_type="eksft", max_steps=4, save_strategy="steps", save_steps=2, learning_rate=5e-3)
    full = build_trainer(make_config(output_dir=str(tmp_path / "full"), **kw))
    full.train()
    want = {r["step"]: r["loss"] for r in read_metrics(full.args.output_dir) if "loss" in r}

    out = str(tmp_path / "interrupted")
    first = build_trainer(make_config(output_dir=out, **kw))
    first.add_callback(StopAt(2))
    first.train()
    assert first.state.global_step == 2
    second = build_trainer(make_config(output_dir=out, **kw))
    second.train(resume_from_checkpoint=f"{out}/checkpoint-2")
    got = {r["step"]: r["loss"] for r in read_metrics(out) if "loss" in r}
    assert sorted(got) == [1, 2, 3, 4]  # the file reads as one trajectory
    assert len(set(want.values())) > 1
    for step in range(1, 5):
        assert got[step] == pytest.approx(want[step], rel=1e-5, abs=1e-6), step


class PoisonAt(TrainerCallback):
    """Set every weight to NaN at the start of a step (after the previous checkpoint was written)."""

    def __init__(self, step):
        self.step = step

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.step:
            for p in model.parameters():
                p.data.fill_(math.nan)


def test_nan_stops_with_step_and_checkpoint(make_config, tmp_path):
    out = str(tmp_path / "nan")
    trainer = build_trainer(make_config(output_dir=out, max_steps=5, save_strategy="steps", save_steps=2))
    trainer.add_callback(PoisonAt(2))
    with pytest.raises(TrainingDiverged) as err:
        trainer.train()
    msg = str(err.value)
    assert "optimiser step 3" in msg and f"{out}/checkpoint-2" in msg
