"""Sample-level metrics: unbiased pass@k (Chen et al. 2021), avg@n, and diversity of a problem's samples."""

from __future__ import annotations

from collections.abc import Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with ``n`` samples of which ``c`` are correct: 1 - C(n-c, k) / C(n, k).

    Computed in the product form 1 - prod_{i=n-c+1}^{n} (1 - k/i) (Chen et al. 2021, Fig. 3), which never forms
    the huge binomials (C(320, 160) overflows a float).
    """
    if not (isinstance(n, int) and isinstance(c, int) and isinstance(k, int)):
        raise TypeError(f"pass_at_k needs integers, got n={n!r}, c={c!r}, k={k!r}")
    if not 0 <= c <= n:
        raise ValueError(f"c={c} correct samples must be between 0 and n={n}")
    if not 1 <= k <= n:
        raise ValueError(f"k={k} must be between 1 and n={n}: pass@k needs at least k samples per problem")
    if n - c < k:  # every k-subset contains a correct sample
        return 1.0
    prob_all_wrong = 1.0
    for i in range(n - c + 1, n + 1):
        prob_all_wrong *= 1.0 - k / i
    return 1.0 - prob_all_wrong


def pass_at_k_mean(counts: Sequence[tuple[int, int]], k: int) -> float:
    """pass@k averaged over problems; ``counts`` holds one ``(n, c)`` per problem (every n must be >= k)."""
    if not counts:
        raise ValueError("no problems to average pass@k over")
    return sum(pass_at_k(n, c, k) for n, c in counts) / len(counts)


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams / all n-grams over whitespace words of ``texts`` (Li et al. 2016); 0.0 if there are none.

    Whitespace words, not model tokens, so models with different tokenizers are compared on the same footing.
    """
    total, seen = 0, set()
    for text in texts:
        words = text.split()
        grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0
