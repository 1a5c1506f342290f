"""``eksft.eval``: pass@k evaluation with math-verify (docs/evaluation.md; protocol in docs/method.md).

Importing this package is cheap; torch, transformers and vLLM load only when sampling starts.
"""

from .metrics import distinct_n, pass_at_k, pass_at_k_mean
from .verify import check_answer, extract_answer, parse_gold

__all__ = ["pass_at_k", "pass_at_k_mean", "distinct_n", "check_answer", "extract_answer", "parse_gold"]
