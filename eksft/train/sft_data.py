"""Preparing an SFT dataset with TRL, and saying what it dropped: records with an empty or whitespace-only completion
(dropped like an empty one), records left with no response token after truncation (TRL drops them silently), and,
when nothing is left, why (with the prompt lengths in tokens) and the fix.
"""

from __future__ import annotations

import logging

from datasets import Dataset

logger = logging.getLogger(__name__)


def prepare_checked(prepare, dataset, processing_class, args, packing, formatting_func, dataset_name):
    """TRL's dataset preparation (``prepare``: ``SFTTrainer._prepare_dataset``) with blank completions dropped and
    counted, truncation losses counted in one warning, and an error naming the cause and the fix when nothing is
    left."""
    if not isinstance(dataset, Dataset) or "input_ids" in dataset.column_names:
        return prepare(dataset, processing_class, args, packing, formatting_func, dataset_name)
    before = len(dataset)
    # A whitespace-only completion teaches nothing but an end of turn: dropped like an empty one (files read by
    # eksft.data.formats refuse such records; this covers datasets passed in Python).
    dataset = dataset.filter(has_completion)
    empty = before - len(dataset)
    out = (  # TRL's preparation of an empty dataset ends in a StopIteration: none is prepared
        prepare(dataset, processing_class, args, packing, formatting_func, dataset_name) if len(dataset) else dataset
    )
    truncated = len(dataset) - len(out) if not packing else 0
    if len(out) == 0:
        raise ValueError(
            _nothing_left(
                prepare, dataset, processing_class, args, packing, formatting_func, dataset_name, before, empty
            )
        )
    # TRL drops records left with no response token by truncation, silently; count them in ONE warning.
    if empty or truncated:
        parts = (
            [
                f"{truncated} have no response token left after truncation to max_length={args.max_length} "
                "(raise max_length or shorten the prompts to keep them)"
            ]
            if truncated
            else []
        ) + ([f"{empty} have an empty or whitespace-only completion"] if empty else [])
        logger.warning(
            "%d of %d %s records were dropped: %s.", empty + truncated, before, dataset_name, "; ".join(parts)
        )
    return out


def _nothing_left(prepare, dataset, processing_class, args, packing, formatting_func, name, before, empty) -> str:
    """The error when every record was dropped: why, with the prompt lengths in tokens and the fix."""
    if len(dataset) == 0:
        return (
            f"all {before} {name} records have an empty or whitespace-only completion: there is nothing "
            "to train on; check the completion column (completion_column / the last assistant turn)."
        )
    sample = dataset.select(range(min(len(dataset), 2000)))
    max_length = args.max_length
    try:  # the same tokenisation without truncation: a prompt's length is its run of leading masked labels
        args.max_length = None
        full = prepare(sample, processing_class, args, packing, formatting_func, f"{name}-probe")
    finally:
        args.max_length = max_length
    lengths = [next((i for i, t in enumerate(r["labels"]) if t != -100), len(r["labels"])) for r in full]
    of = f" (of the first {len(sample)})" if len(sample) < len(dataset) else ""
    return (
        f"all {before} {name} records were dropped: after truncation to max_length={max_length} none has "
        f"a response token left. Prompts{of} are {min(lengths)} to {max(lengths)} tokens long (the longest: "
        f"{max(lengths)}); set max_length above {max(lengths)} (at least above {min(lengths)}) or shorten "
        "the prompts."
    )


def has_completion(record: dict) -> bool:
    return not _empty_completion(record)


def _empty_completion(record: dict) -> bool:
    """A completion (or the last assistant turn of ``messages``) that is empty or only whitespace."""
    value = record.get("completion", record.get("messages"))
    if isinstance(value, list):
        value = value[-1].get("content") if value and isinstance(value[-1], dict) else value
    return isinstance(value, str) and not value.strip()
