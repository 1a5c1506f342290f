"""``eksft losses``: train a tiny random Llama for a few steps with every loss and print each one's terms.

A seconds-long, download-free end-to-end check that every loss runs, backpropagates and reports its metrics on a
real causal LM architecture (random weights); the laptop demo (``eksft demo``) is the real-model run.
"""

from __future__ import annotations

import argparse
import json
import time

HELP = "Train a tiny random model a few steps with each loss and print the loss terms."

COLUMNS = ("loss", "ce", "entropy_term", "kl_term", "masked_fraction", "iou_entropy_kl", "entropy_mean", "kl_mean")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--methods", default="all", help="comma-separated loss types, or 'all'")
    p.add_argument("--steps", type=int, default=5, help="optimiser steps per method")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON line per method instead of a table")


def tiny_batch(vocab: int, seed: int, batch: int = 4, length: int = 48):
    """Random 'prompt + response' sequences: the first third of each row is prompt (-100 labels), rest response."""
    import torch

    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, vocab, (batch, length), generator=g)
    labels = input_ids.clone()
    labels[:, : length // 3] = -100
    return input_ids, labels


def run(args) -> int:
    from eksft.losses import SPECS

    methods = list(SPECS) if args.methods == "all" else [m.strip() for m in args.methods.split(",")]
    unknown = [m for m in methods if m not in SPECS]
    if unknown:
        raise SystemExit(f"unknown loss type(s) {unknown}; choose from {sorted(SPECS)}")
    rows = []
    for method in methods:
        rows.append(train_one(method, args.steps, args.seed))
        if args.json:
            print(json.dumps(rows[-1]), flush=True)
    if not args.json:
        print_table(rows, args.steps)
    return 0


def train_one(method: str, steps: int, seed: int) -> dict:
    """``steps`` AdamW steps of a fresh tiny random Llama on one batch with loss ``method``; its last-step metrics.
    The extra inputs each loss takes come from its row of ``eksft.losses.SPECS``."""
    import torch
    from transformers import LlamaForCausalLM

    from eksft.losses import SPECS, calibrate_sed_tau, target_logprobs
    from eksft.models.tiny import tiny_config

    spec = SPECS[method]
    config = tiny_config(vocab_size=256, hidden_size=64, intermediate_size=128, max_position_embeddings=128)
    input_ids, labels = tiny_batch(config.vocab_size, seed)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    ref = LlamaForCausalLM(config).eval()
    ref.load_state_dict(model.state_dict())
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    tau = calibrate_sed_tau(model, [{"input_ids": input_ids, "labels": labels}]) if "tau" in spec.per_batch else None
    start = time.perf_counter()
    with torch.no_grad():  # one data batch, several updates: PSFT's ratio moves away from 1
        old_logps = target_logprobs(model(input_ids).logits, labels)
    for step in range(steps):
        logits = model(input_ids).logits
        if spec.third == "ref_logits":
            with torch.no_grad():
                third = (ref(input_ids).logits,)
        else:
            third = (old_logps,) if spec.third == "old_logps" else ()
        per_batch = {k: v for k, v in (("tau", tau), ("seed", seed + step)) if k in spec.per_batch}
        result = spec.fn(logits, labels, *third, **per_batch)
        opt.zero_grad()
        result.loss.backward()
        opt.step()
    row = {"method": method, "seconds": round(time.perf_counter() - start, 3)}
    row.update({k: round(result.metrics[k], 4) for k in COLUMNS if k in result.metrics})
    return row


def print_table(rows: list[dict], steps: int) -> None:
    print(
        f"Last-step loss terms after {steps} AdamW steps on a tiny random Llama "
        f"(4 x 48 tokens, 2/3 response); '-' = the method has no such term.\n"
    )
    header = ["method", *COLUMNS]
    print("  ".join(f"{h:>15}" for h in header))
    for row in rows:
        print(
            "  ".join(
                f"{row.get(h, '-'):>15}" if h == "method" else (f"{row[h]:>15.4f}" if h in row else f"{'-':>15}")
                for h in header
            )
        )
