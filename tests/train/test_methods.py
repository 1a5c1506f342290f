"""Method machinery (CPU, tiny random Llama): PSFT with one update per data batch trains to the same parameters as
SFT; SED-SFT calibrates tau on the starting model before training, saves it to sed_tau.json, logs it, and equals
eksft.losses.calibrate_sed_tau on the same data; random_mask and IW-SFT run end to end."""

from __future__ import annotations

import json
import os

import torch
from torch.utils.data import DataLoader

from eksft.jobs.metrics import read_metrics
from eksft.losses import calibrate_sed_tau
from eksft.models.tiny import tiny_random_llama
from eksft.train import build_trainer

from .conftest import params


def test_psft_one_update_equals_sft(make_config, tmp_path):
    sft = build_trainer(make_config(loss_type="sft", output_dir=str(tmp_path / "sft")))
    start = params(sft.model)
    sft.train()
    psft = build_trainer(make_config(loss_type="psft", psft_updates_per_batch=1, output_dir=str(tmp_path / "psft")))
    psft.train()
    a, b = params(sft.model), params(psft.model)
    assert any(not torch.equal(start[n], a[n]) for n in a)
    for n in a:
        torch.testing.assert_close(a[n], b[n], rtol=1e-4, atol=1e-6, msg=n)
    ratios = [r["ratio_mean"] for r in read_metrics(psft.args.output_dir) if "ratio_mean" in r]
    assert ratios and all(abs(r - 1.0) < 1e-5 for r in ratios)


def test_sed_tau_calibrated_saved_and_logged(make_config):
    trainer = build_trainer(
        make_config(loss_type="sed_sft", sed_k=2, sed_r=0.7, sed_calibration_samples=8, max_steps=2)
    )
    # independent calibration on the starting model over the same 8 prepared records
    start, _ = tiny_random_llama(seed=0)
    ds = trainer.train_dataset.select(range(8)).select_columns(["input_ids", "labels"])
    loader = DataLoader(ds, batch_size=2, collate_fn=trainer.data_collator)
    want = calibrate_sed_tau(start, loader, k=2, r=0.7)
    trainer.train()
    with open(os.path.join(trainer.args.output_dir, "sed_tau.json")) as f:
        saved = json.load(f)
    assert saved["tau"] == want and saved["k"] == 2 and saved["r"] == 0.7 and saved["num_records"] == 8
    logged = [r["sed_tau"] for r in read_metrics(trainer.args.output_dir) if "sed_tau" in r]
    assert logged and all(t == want for t in logged)


def test_random_mask_and_iw_sft_run(make_config, tmp_path):
    for loss_type in ("random_mask", "iw_sft"):
        trainer = build_trainer(make_config(loss_type=loss_type, max_steps=2, output_dir=str(tmp_path / loss_type)))
        trainer.train()
        rows = [r for r in read_metrics(trainer.args.output_dir) if "loss" in r]
        assert len(rows) == 2
        if loss_type == "random_mask":
            assert all(abs(r["masked_fraction"] - 0.1) < 0.05 for r in rows)
        else:
            assert rows[0]["weight_mean"] == 1.0  # policy == reference at the first step: w = exp(0)
