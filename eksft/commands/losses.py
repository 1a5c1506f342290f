"""``eksft losses``: train a tiny random Llama for a few steps with every loss and print each one's terms.

A seconds-long, download-free end-to-end check that every loss runs, backpropagates and reports its metrics on a
real causal LM architecture (random weights); the laptop demo (``eksft demo``) is the real-model run.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

HELP = "Train a tiny random model a few steps with each loss and print the loss terms."

COLUMNS = ("loss", "ce", "entropy_term", "kl_term", "masked_fraction", "iou_entropy_kl", "entropy_mean", "kl_mean")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--methods", default="all", help="comma-separated loss types, or 'all'")
    p.add_argument("--steps", type=int, default=5, help="optimiser steps per method")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON line per method instead of a table")


def tiny_batch(vocab: int, seed: int, batch: int = 4, length: int = 48):
    """Random 'prompt + response' sequences: the first third of each row is prompt (-100 labels), rest response."""
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, vocab, (batch, length), generator=g)
    labels = input_ids.clone()
    labels[:, : length // 3] = -100
    return input_ids, labels


def run(args) -> int:
    from transformers import LlamaConfig, LlamaForCausalLM

    from eksft.losses import LOSSES, NEEDS_REFERENCE, calibrate_sed_tau, target_logprobs

    methods = list(LOSSES) if args.methods == "all" else [m.strip() for m in args.methods.split(",")]
    unknown = [m for m in methods if m not in LOSSES]
    if unknown:
        raise SystemExit(f"unknown loss type(s) {unknown}; choose from {sorted(LOSSES)}")
    config = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)  # fmt: skip
    input_ids, labels = tiny_batch(config.vocab_size, args.seed)
    rows = []
    for method in methods:
        torch.manual_seed(args.seed)
        model = LlamaForCausalLM(config)
        ref = LlamaForCausalLM(config).eval()
        ref.load_state_dict(model.state_dict())
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        kwargs = {}
        if method == "sed_sft":
            kwargs["tau"] = calibrate_sed_tau(model, [{"input_ids": input_ids, "labels": labels}])
        start = time.perf_counter()
        with torch.no_grad():
            old_logps = target_logprobs(model(input_ids).logits, labels)
        for step in range(args.steps):
            logits = model(input_ids).logits
            extra = dict(kwargs)
            if method in NEEDS_REFERENCE:
                with torch.no_grad():
                    extra_args = (ref(input_ids).logits,)
            elif method == "psft":
                extra_args = (old_logps,)  # one data batch, several updates: the ratio moves away from 1
            else:
                extra_args = ()
            if method == "random_mask":
                extra["seed"] = args.seed + step
            result = LOSSES[method](logits, labels, *extra_args, **extra)
            opt.zero_grad()
            result.loss.backward()
            opt.step()
        row = {"method": method, "seconds": round(time.perf_counter() - start, 3)}
        row.update({k: round(result.metrics[k], 4) for k in COLUMNS if k in result.metrics})
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
    if not args.json:
        print(f"Last-step loss terms after {args.steps} AdamW steps on a tiny random Llama "
              f"(4 x 48 tokens, 2/3 response); '-' = the method has no such term.\n")  # fmt: skip
        header = ["method", *COLUMNS]
        print("  ".join(f"{h:>15}" for h in header))
        for row in rows:
            print("  ".join(f"{row.get(h, '-'):>15}" if h == "method" else
                            (f"{row[h]:>15.4f}" if h in row else f"{'-':>15}") for h in header))  # fmt: skip
    return 0
