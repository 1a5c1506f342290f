"""The data of ``train_step.py``: synthetic records written to a file, and the one fixed batch every method gets
(exactly ``batch`` x ``seq_len`` tokens of the trainer-tokenised records)."""

from __future__ import annotations

import json


def write_records(path: str, dataset: str, n: int) -> str:
    from eksft.data.synthetic import training_records

    with open(path, "w", encoding="utf-8") as f:
        for r in training_records(dataset, n):
            f.write(json.dumps({"prompt": r["prompt"], "completion": r["completion"]}) + "\n")
    return path


def fixed_batch(train_dataset, batch: int, seq_len: int) -> dict:
    """``batch`` rows of exactly ``seq_len`` tokens: the trainer-tokenised records (``input_ids`` / ``labels``,
    prompt labels -100) laid end to end, cycling if there are too few. Full attention mask, no padding."""
    import torch

    ids, labels, need = [], [], batch * seq_len
    rows = list(zip(train_dataset["input_ids"], train_dataset["labels"]))
    if not rows:
        raise ValueError("the training dataset is empty after tokenisation")
    while len(ids) < need:
        for i, lab in rows:
            ids.extend(i)
            labels.extend(lab)
            if len(ids) >= need:
                break
    ids = torch.tensor(ids[:need]).view(batch, seq_len)
    labels = torch.tensor(labels[:need]).view(batch, seq_len)
    if not labels[:, 1:].ne(-100).any():
        raise ValueError(f"no scored (completion) token in a {batch} x {seq_len} batch: raise --seq-len")
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def the_batch(runners: dict, args, path: str, data_file: str) -> dict:
    """The one batch every method gets: cut from the first trainer's tokenised records or, when only ``ref_forward``
    was built, from the records tokenised as TRL does plain prompt-completion records."""
    trainer = next((r.trainer for r in runners.values() if r.trainer is not None), None)
    if trainer is not None:
        return fixed_batch(trainer.train_dataset, args.batch, args.seq_len)
    from eksft.jobs.policy import training_tokenizer as load_tokenizer

    tok, ids, labels = load_tokenizer(path), [], []
    with open(data_file, encoding="utf-8") as f:
        for rec in map(json.loads, f):
            p, c = tok(rec["prompt"])["input_ids"], tok(rec["completion"] + tok.eos_token)["input_ids"]
            ids.append(p + c)
            labels.append([-100] * len(p) + c)
    return fixed_batch({"input_ids": ids, "labels": labels}, args.batch, args.seq_len)
