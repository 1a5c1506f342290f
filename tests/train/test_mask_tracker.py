"""Persistently masked targets (eksft/train/step_log.py): per-token-id counts of what the loss's mask held, the
``persistently_masked_fraction`` metric, the one warning, ``OUTPUT_DIR/mask_targets.json``.

Built to trigger: a token masked at every occurrence for the window of steps (synthetic masks), and EKSFT with
rho = 1 (every target masked every step) on the tiny random Llama. Must not warn: one unmasked occurrence breaks the
run; random_mask (a fresh random mask each step); SFT (no mask: nothing tracked, no file). About 5 s on one thread.
"""

from __future__ import annotations

import logging
import math
import os

import pytest
import torch

from eksft.analysis.masks import TARGETS_FILE, read_targets
from eksft.jobs.metrics import read_metrics
from eksft.train import build_trainer
from eksft.train.step_log import METRIC, MaskTracker

pytestmark = pytest.mark.usefixtures("one_thread")
LOGGER = "eksft.train.step_log"


def batch(tokens, masked, prob=0.5):
    """One micro-batch of one sequence: a prompt token (-100), then ``tokens``; ``masked`` holds the masked ids."""
    labels = torch.tensor([[-100, *tokens]])
    mask = torch.tensor([[False, *[t in masked for t in tokens]]])
    logp = torch.tensor([[0.0, *[math.log(prob)] * len(tokens)]])
    return labels, mask, logp


def test_a_token_masked_at_every_step_warns_once(caplog):
    tracker = MaskTracker(steps=3, share=0.2)
    decode = lambda ids: f"<{ids[0]}>"  # noqa: E731
    # token 7: masked at both of its occurrences in every step; token 9: never masked; token 8: masked in steps
    # 1, 3, 4, absent in step 2 (an absent step neither extends nor breaks a run), trained in step 5.
    want = {1: 0.0, 2: 0.0, 3: 2 / 5, 4: 3 / 5, 5: 2 / 5}  # share of the step's targets in a run of >= 3 steps
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for step in range(1, 6):
            tracker.add(*batch([7, 9, 7], masked={7}, prob=0.02 * step))
            if step != 2:
                tracker.add(*batch([8, 9], masked={8} if step != 5 else set()))
            assert tracker.end_step(step, decode) == pytest.approx(want[step]), step
    warnings = [r.getMessage() for r in caplog.records if "persistent mask" in r.getMessage()]
    assert len(warnings) == 1 and "at step 3: 40% of this step's targets" in warnings[0] and "'<7>'" in warnings[0]
    assert "can never be learned by cross-entropy" in warnings[0] and "mask_persistence_share" in warnings[0]
    rows = {r["token_id"]: r for r in tracker.rows(decode)}
    assert rows[7] == {
        "token_id": 7,
        "text": "<7>",
        "masked_share": 1.0,
        "occurrences": 10,
        "masked": 10,
        "steps_seen": 5,
        "steps_all_masked": 5,
        "streak": 5,
        "final_prob": pytest.approx(0.10),  # its mean probability in the last step it occurred (0.02 x 5)
    }
    assert (rows[8]["masked"], rows[8]["steps_seen"], rows[8]["steps_all_masked"], rows[8]["streak"]) == (3, 4, 3, 0)
    assert 9 not in rows  # never masked: not listed
    assert [r["token_id"] for r in tracker.rows()] == [7, 8]  # most-masked first
    assert tracker.warned_at == 3


def test_one_unmasked_occurrence_breaks_the_run_and_nothing_warns(caplog):
    tracker = MaskTracker(steps=3, share=0.01)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for step in range(1, 8):
            # token 7 occurs twice a step; one of its occurrences is trained every third step
            tracker.add(*batch([7, 9], masked={7, 9} if step % 3 else {9}))
            tracker.add(*batch([7], masked={7}))
            tracker.add(*batch([9], masked=set()))  # token 9 is trained in every step
            assert tracker.end_step(step) == 0.0
    assert not [r for r in caplog.records if "persistent mask" in r.getMessage()]
    assert tracker.warned_at is None


def test_eksft_masking_everything_warns_and_lists_the_targets(make_config, caplog):
    cfg = make_config(loss_type="eksft", rho=1.0, max_steps=4, mask_persistence_steps=3, mask_persistence_share=0.5)
    trainer = build_trainer(cfg)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        trainer.train()
    warnings = [r.getMessage() for r in caplog.records if "persistent mask" in r.getMessage()]
    assert len(warnings) == 1 and "at step 3:" in warnings[0]
    shares = [r[METRIC] for r in read_metrics(cfg.output_dir) if METRIC in r]
    assert shares[:2] == [0.0, 0.0] and min(shares[2:]) > 0.5  # tokens first seen at step 2 or later: not yet
    report = read_targets(cfg.output_dir)
    assert report["warned_at_step"] == 3 and report["steps"] == 4 and report["masked"] == report["targets"] > 0
    rows = report["tokens"]
    assert all(r["masked_share"] == 1.0 for r in rows) and {"=", "+"} <= {r["text"] for r in rows}
    assert all(0.0 < r["final_prob"] < 1.0 for r in rows)


def test_random_mask_does_not_warn(make_config, caplog):
    cfg = make_config(loss_type="random_mask", random_mask_fraction=0.3, max_steps=6, mask_persistence_steps=4)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        build_trainer(cfg).train()
    assert not [r for r in caplog.records if "persistent mask" in r.getMessage()]
    report = read_targets(cfg.output_dir)
    assert report["warned_at_step"] is None and report["steps"] == 6
    assert 0.15 < report["masked"] / report["targets"] < 0.45


def test_sft_tracks_nothing(make_config):
    cfg = make_config(loss_type="sft", max_steps=2)
    build_trainer(cfg).train()
    assert not os.path.exists(os.path.join(cfg.output_dir, TARGETS_FILE))
    assert all(METRIC not in r for r in read_metrics(cfg.output_dir))


def test_the_fused_path_tracks_the_same_masks(make_config, tmp_path):
    """loss_implementation fused and logits list the same targets (the fused head returns mask and target_logp)."""
    reports = {}
    for impl in ("fused", "logits"):
        cfg = make_config(loss_type="eksft", max_steps=2, loss_implementation=impl, output_dir=str(tmp_path / impl))
        build_trainer(cfg).train()
        reports[impl] = read_targets(cfg.output_dir)
    fused, logits = reports["fused"]["tokens"], reports["logits"]["tokens"]
    assert [(r["token_id"], r["masked"], r["occurrences"]) for r in fused] == [
        (r["token_id"], r["masked"], r["occurrences"]) for r in logits
    ]
    assert [r["final_prob"] for r in fused] == pytest.approx([r["final_prob"] for r in logits], rel=1e-4)
