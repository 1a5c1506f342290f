"""``eksft.eval``: pass@k evaluation with math-verify (docs/evaluation.md, which also gives the paper's protocol).

Importing this package is cheap; torch, transformers and vLLM load only when sampling starts, numpy only when an
interval or comparison is asked for.
"""

from .metrics import distinct_n, pass_at_k, pass_at_k_mean
from .verify import check_answer, extract_answer, parse_gold, rescore

_LAZY = {
    "pass_at_k_interval": "intervals",
    "bootstrap_interval": "intervals",
    "seed_interval": "intervals",
    "mean_ci": "intervals",
    "Interval": "intervals",
    "paired_difference": "compare",
    "difference_sentence": "compare",
    "seed_sentence": "compare",
    "PairedDifference": "compare",
    "load_result": "compare",
}

__all__ = [
    "pass_at_k",
    "pass_at_k_mean",
    "distinct_n",
    "check_answer",
    "extract_answer",
    "parse_gold",
    "rescore",
    *_LAZY,
]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
