"""pass@k: the product-form estimator against brute-force enumeration of every k-subset; refusals; stability.

Pure Python, CPU only, well under a second.
"""

from itertools import combinations
from math import comb

import pytest

from eksft.eval import pass_at_k, pass_at_k_mean


def brute_force(n: int, c: int, k: int) -> float:
    """Share of all k-subsets of n samples (c of them correct) that contain at least one correct sample."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 9))
def test_matches_enumeration_for_every_c_and_k(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_force(n, c, k), abs=1e-12), (n, c, k)


def test_known_values():
    assert pass_at_k(10, 0, 5) == 0.0
    assert pass_at_k(10, 10, 1) == 1.0
    assert pass_at_k(32, 8, 1) == pytest.approx(8 / 32)  # pass@1 is the share of correct samples (avg@n)
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)


def test_large_n_is_stable_where_binomials_overflow_floats():
    # C(320, 160) ~ 1e95 is fine as an int but its float ratio loses nothing only in exact arithmetic: compare.
    exact = 1 - comb(320 - 5, 160) / comb(320, 160)
    assert pass_at_k(320, 5, 160) == pytest.approx(exact, rel=1e-12)
    assert 0.0 <= pass_at_k(5000, 1, 4999) <= 1.0


def test_k_larger_than_n_is_refused():
    with pytest.raises(ValueError, match="between 1 and n=4"):
        pass_at_k(4, 1, 5)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 0)
    with pytest.raises(ValueError, match="between 0 and n"):
        pass_at_k(4, 5, 1)


def test_mean_over_problems():
    counts = [(4, 0), (4, 4), (4, 1)]
    assert pass_at_k_mean(counts, 2) == pytest.approx((0 + 1 + 0.5) / 3)
