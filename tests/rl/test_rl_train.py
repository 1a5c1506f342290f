"""``eksft rl`` end to end on the built-in tiny random Llama (CPU, 1 thread, ~15 s): DAPO steps through TRL's
GRPOTrainer with HF generation write metrics.jsonl with reward / accuracy / entropy / clip / length keys and save a
reloadable model; ``--resume_from_checkpoint`` continues on the uninterrupted run's trajectory with one metrics line
per step."""

from __future__ import annotations

import os

import pytest

from eksft.cli import main
from eksft.jobs.metrics import read_metrics
from eksft.rl import build_rl_trainer, train_rl
from tests.helpers import StopAt

KEYS = (
    "reward",
    "rewards/accuracy/mean",
    "rewards/soft_overlong_punishment_reward/mean",
    "entropy",
    "clip_ratio/low_mean",
    "clip_ratio/high_mean",
    "completions/mean_length",
    "completions/clipped_ratio",
    "loss",
)


def test_two_dapo_steps_write_metrics_and_model(make_rl_config):
    cfg = make_rl_config(max_steps=2)
    trainer = train_rl(cfg)
    assert trainer.state.global_step == 2
    rows = [r for r in read_metrics(cfg.output_dir) if "reward" in r]
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        for key in KEYS:
            assert key in r, key
        assert (
            0.0 <= r["rewards/accuracy/mean"] <= 1.0 and -1.0 <= r["rewards/soft_overlong_punishment_reward/mean"] <= 0
        )
        assert 0 < r["completions/mean_length"] <= cfg.max_completion_length and r["entropy"] > 0
    assert os.path.exists(os.path.join(cfg.output_dir, "model.safetensors"))
    assert os.path.exists(os.path.join(cfg.output_dir, "tokenizer_config.json"))


def test_resume_from_checkpoint(make_rl_config, tmp_path):
    out = str(tmp_path / "interrupted")
    kw = dict(output_dir=out, max_steps=4, save_strategy="steps", save_steps=2)
    first = build_rl_trainer(make_rl_config(**kw))
    first.add_callback(StopAt(2))
    first.train()
    assert first.state.global_step == 2 and os.path.isdir(f"{out}/checkpoint-2")
    before = {r["step"]: r for r in read_metrics(out) if "reward" in r}
    second = train_rl(make_rl_config(**kw), resume_from_checkpoint=f"{out}/checkpoint-2")
    assert second.state.global_step == 4
    rows = {r["step"]: r for r in read_metrics(out) if "reward" in r}
    assert sorted(rows) == [1, 2, 3, 4]  # one trajectory: steps 1-2 kept, 3-4 appended once
    assert rows[2] == before[2]
    # the optimiser, scheduler and sampling RNG resumed too: steps 3-4 match an uninterrupted run
    full = train_rl(make_rl_config(**{**kw, "output_dir": str(tmp_path / "full")}))
    want = {r["step"]: r for r in read_metrics(full.args.output_dir) if "reward" in r}
    for step in (3, 4):
        for key in ("loss", "completions/mean_length", "learning_rate", "entropy"):
            assert rows[step][key] == pytest.approx(want[step][key], rel=1e-4, abs=1e-6), (step, key)


def test_cli_runs_the_demo_config_with_overrides(tmp_path, monkeypatch, capsys):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    monkeypatch.chdir(root)
    out = str(tmp_path / "cli")
    assert (
        main(
            [
                "rl",
                "configs/rl_demo_cpu.yaml",
                "--max_steps",
                "1",
                "--output_dir",
                out,
                "--report_to",
                "none",
                "--max_completion_length",
                "24",
                "--overlong_buffer_len",
                "8",
                "--disable_tqdm",
                "true",
            ]
        )
        == 0
    )
    assert "done: model and metrics.jsonl" in capsys.readouterr().out
    assert [r["step"] for r in read_metrics(out) if "reward" in r] == [1]
