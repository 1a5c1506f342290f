"""SED-SFT's threshold τ: calibrated once on the *starting* model before training (docs/losses.md), logged
with every training log as ``sed_tau`` and saved to ``OUTPUT_DIR/sed_tau.json`` so a resumed run reuses it.

Calibration runs before the Trainer wraps the model in its engine. Under DeepSpeed ZeRO-3 the model was built inside
``deepspeed.zero.Init``, so its parameters are already partitioned (0-element placeholders) and nothing gathers them
for a forward yet: every process gathers the whole model for the calibration (:func:`whole_model`), a no-op
otherwise (FSDP shards only when the Trainer prepares the model). Found by ``eksft train
configs/paper/qwen3_4b_sed_sft.yaml --smoke`` (``'weight' must be 2-D`` in the embedding).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os

from torch.utils.data import DataLoader

from eksft.losses import calibrate_sed_tau

TAU_FILE = "sed_tau.json"
logger = logging.getLogger(__name__)


def whole_model(model):
    """All parameters of ``model`` gathered while the context lasts under DeepSpeed ZeRO-3 (read only); else a
    no-op context."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    if not is_deepspeed_zero3_enabled():
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None)


def resolve_tau(trainer, calibration_dataset, resuming: bool) -> float:
    args = trainer.args
    path = os.path.join(args.output_dir, TAU_FILE)
    if args.sed_tau is not None:
        tau, info = float(args.sed_tau), {"source": "config (sed_tau)"}
    elif resuming and os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        logger.info("SED-SFT: reusing tau=%.6f from %s", saved["tau"], path)
        return float(saved["tau"])
    else:
        dataset = calibration_dataset if calibration_dataset is not None else trainer.train_dataset
        n = min(args.sed_calibration_samples, len(dataset))
        dataset = dataset.select(range(n))
        keep = [c for c in ("input_ids", "labels", "seq_lengths") if c in dataset.column_names]
        loader = DataLoader(
            dataset.select_columns(keep), batch_size=args.per_device_train_batch_size, collate_fn=trainer.data_collator
        )
        batches = (
            {k: v for k, v in b.items() if k in ("input_ids", "attention_mask", "position_ids", "labels")}
            for b in loader
        )
        with whole_model(trainer.model):
            tau = calibrate_sed_tau(trainer.model, batches, k=args.sed_k, r=args.sed_r)
        info = {"source": args.sed_calibration_data or "training data", "num_records": n}
    info = {"tau": tau, "k": args.sed_k, "r": args.sed_r, **info}
    if trainer.is_world_process_zero():
        os.makedirs(args.output_dir, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(info, f, indent=2)
    logger.info("SED-SFT: tau=%.6f (k=%d, r=%.2f) saved to %s", tau, args.sed_k, args.sed_r, path)
    return tau
