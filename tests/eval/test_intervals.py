"""Intervals and the paired comparison against brute-force computations on small synthetic (n, c) tables.

The bootstrap is recomputed with plain Python loops over the same index draws (fixed seed reproduces, exactly); its
resampled distribution is checked against exact enumeration of every resample of a 3-problem table; a model against
itself gives an interval containing 0; a model right on every problem against one right on none a positive one.
Pure Python and numpy, CPU only, about a second.
"""

import itertools
import math

import numpy as np
import pytest

from eksft.eval import pass_at_k, pass_at_k_mean
from eksft.eval.compare import PairedDifference, difference_sentence, paired_difference, seed_sentence
from eksft.eval.intervals import (
    bootstrap_interval,
    mean_ci,
    pass_at_k_interval,
    resample_counts,
    seed_interval,
)
from eksft.eval.report import summarize

TABLE_A = [(8, 0), (8, 1), (8, 3), (8, 8), (8, 5), (8, 0), (8, 2)]
TABLE_B = [(8, 1), (8, 4), (8, 3), (8, 8), (8, 7), (8, 0), (8, 6)]


def brute_bootstrap(per_problem, k, resamples, seed):
    """Resampled pass@k means, one Python loop per resample, from the draws the library documents."""
    idx = np.random.default_rng(seed).integers(0, len(per_problem), size=(resamples, len(per_problem)))
    out = []
    for row in idx:
        out.append(sum(pass_at_k(*per_problem[i], k) for i in row) / len(row))
    return out


def quantiles(xs):
    lo, hi = np.quantile(xs, [0.025, 0.975])
    return float(lo), float(hi)


@pytest.mark.parametrize("k", [1, 4, 8])
def test_bootstrap_matches_brute_force_and_reproduces(k):
    iv = pass_at_k_interval(TABLE_A, k, resamples=2000, seed=7)
    assert iv.estimate == pytest.approx(pass_at_k_mean(TABLE_A, k))
    lo, hi = quantiles(brute_bootstrap(TABLE_A, k, 2000, 7))
    assert (iv.low, iv.high) == pytest.approx((lo, hi), abs=1e-12)
    again = pass_at_k_interval(TABLE_A, k, resamples=2000, seed=7)
    assert (again.low, again.high) == (iv.low, iv.high)  # fixed seed: identical
    assert not np.array_equal(resample_counts(7, 2000, 7), resample_counts(7, 2000, 8))  # another seed, other draws
    assert iv.low <= iv.estimate <= iv.high
    assert "bootstrap" in iv.method and "2000 resamples" in iv.method and "7 problems" in iv.method


def test_resampled_distribution_matches_exact_enumeration():
    """3 problems: the 27 equally likely resamples give the exact bootstrap distribution of the mean."""
    table = [(4, 0), (4, 1), (4, 4)]
    values = [pass_at_k(n, c, 2) for n, c in table]
    exact = sorted(sum(values[i] for i in r) / 3 for r in itertools.product(range(3), repeat=3))
    drawn = np.sort(brute_bootstrap(table, 2, 4000, 0))
    lib = np.sort(resample_counts(3, 4000, 0) @ np.array(values) / 3)
    assert lib == pytest.approx(drawn, abs=1e-12)
    for x in sorted(set(exact)):  # empirical CDF within sampling error of the exact one at every support point
        assert np.mean(drawn <= x + 1e-12) == pytest.approx(np.mean(np.array(exact) <= x + 1e-12), abs=0.03)


def test_each_resample_keeps_the_problem_count():
    counts = resample_counts(5, 300, 1)
    assert counts.shape == (300, 5) and (counts.sum(axis=1) == 5).all()


def test_constant_tables_give_degenerate_intervals():
    assert pass_at_k_interval([(4, 4)] * 5, 2).as_list() == [1.0, 1.0]
    assert pass_at_k_interval([(4, 0)] * 5, 2).as_list() == [0.0, 0.0]


def brute_paired(a, b, k, resamples, seed):
    idx = np.random.default_rng(seed).integers(0, len(a), size=(resamples, len(a)))
    diffs, greater = [], 0
    for row in idx:
        ma = sum(pass_at_k(*a[i], k) for i in row) / len(row)
        mb = sum(pass_at_k(*b[i], k) for i in row) / len(row)
        diffs.append(mb - ma)
        greater += mb > ma + 1e-12
    return diffs, greater / resamples


@pytest.mark.parametrize("k", [1, 8])
def test_paired_difference_matches_brute_force(k):
    d = paired_difference(TABLE_A, TABLE_B, k, resamples=2000, seed=11)
    diffs, share = brute_paired(TABLE_A, TABLE_B, k, 2000, 11)
    assert d.difference == pytest.approx(pass_at_k_mean(TABLE_B, k) - pass_at_k_mean(TABLE_A, k))
    assert (d.low, d.high) == pytest.approx(quantiles(diffs), abs=1e-12)
    assert d.share_b_greater == pytest.approx(share)
    assert d.metric == f"pass@{k}" and d.num_problems == 7 and d.resamples == 2000
    # the paired interval is narrower than the difference of two independent intervals would suggest
    ia, ib = pass_at_k_interval(TABLE_A, k, seed=11), pass_at_k_interval(TABLE_B, k, seed=11)
    assert d.high - d.low < (ia.high - ia.low) + (ib.high - ib.low)


def test_model_against_itself_contains_zero():
    d = paired_difference(TABLE_A, TABLE_A, 4)
    assert d.difference == 0 and d.low <= 0 <= d.high and d.share_b_greater == 0
    assert not d.distinguishable
    assert "not distinguishable at this size (7 problems)" in difference_sentence(d, "SFT", "SFT again")


def test_all_correct_against_none_correct_is_positive():
    none, every = [(8, 0)] * 6, [(8, 8)] * 6
    d = paired_difference(none, every, 1)
    assert d.low > 0 and d.difference == 1.0 and d.share_b_greater == 1.0 and d.distinguishable
    assert difference_sentence(d, "base", "tuned").startswith(
        "tuned − base on pass@1: +100.0 points, 95% interval [+100.0, +100.0]: tuned higher"
    )
    d = paired_difference(every, none, 1)
    assert d.high < 0 and "lower" in difference_sentence(d)


def test_problems_are_paired_by_id_and_mismatches_refused():
    a = {"p1": (4, 0), "p2": (4, 4)}
    b = {"p2": (4, 4), "p1": (4, 0)}  # same problems, other order: identical models
    d = paired_difference(a, b, 1)
    assert d.difference == 0 and d.low == 0 == d.high
    with pytest.raises(ValueError, match=r"1 problem\(s\) only in B \(p3\)"):
        paired_difference(a, {**b, "p3": (4, 1)}, 1)
    with pytest.raises(ValueError, match="same"):
        paired_difference([(4, 0)], [(4, 0), (4, 1)], 1)


def test_sentence_of_the_issue():
    d = PairedDifference("pass@32", 0.5, 0.541, 0.041, -0.020, 0.103, 0.81, 30, 2000, 0)
    assert difference_sentence(d, "SFT", "EKSFT") == (
        "EKSFT − SFT on pass@32: +4.1 points, 95% interval [−2.0, +10.3]: not distinguishable at this size "
        "(30 problems)."
    )


def test_seed_level_t_interval():
    xs = [0.2, 0.3, 0.4]
    m, h = mean_ci(xs)
    sd = math.sqrt(sum((x - 0.3) ** 2 for x in xs) / 2)
    assert m == pytest.approx(0.3) and h == pytest.approx(4.303 * sd / math.sqrt(3))
    iv = seed_interval(xs)
    assert (iv.low, iv.high) == pytest.approx((0.3 - h, 0.3 + h)) and "3 seeds" in iv.method
    assert seed_interval([0.5]).low is None
    diffs = [PairedDifference("pass@1", 0, x, x, x, x, 1.0, 5, 10, 0) for x in xs]
    assert seed_sentence(diffs, "A", "B").startswith("B − A on pass@1 over 3 seeds: +30.0 points, 95% t-interval")
    from eksft.demo import stats  # the demo keeps importing the t-interval from where it was

    assert stats.mean_ci is mean_ci


def test_bootstrap_interval_of_any_per_problem_metric():
    iv = bootstrap_interval([1.0, 2.0, 3.0, 4.0], resamples=2000, seed=0)
    assert iv.estimate == 2.5 and 1.0 <= iv.low < 2.5 < iv.high <= 4.0


def lines_for(table, model="m", checks_last_number=None):
    """Synthetic samples.jsonl records: problem i has n samples, the first c of them correct."""
    out = []
    for i, (n, c) in enumerate(table):
        for j in range(n):
            ok = j < c
            ln = ok if checks_last_number is None else j < checks_last_number[i]
            out.append(
                {
                    "model": model,
                    "benchmark": "b",
                    "problem_id": f"p{i}",
                    "correct": ok,
                    "answer": str(j % 3) if j % 2 else None,
                    "completion": f"step {j} answer {j % 3}",
                    "num_tokens": 5 + j,
                    "truncated": j == 0,
                    "mean_entropy": 0.5 + j / 10,
                    "checks": {"last_boxed": ok, "last_number": ln},
                }
            )
    return out


def test_summary_carries_intervals_band_and_per_problem_counts():
    s = summarize(lines_for(TABLE_A, checks_last_number=[8, 2, 3, 8, 5, 1, 2]), [1, 4, 8], extraction="last_boxed")
    assert [(r["n"], r["c"]) for r in s["per_problem"]] == TABLE_A
    assert [r["c_last_number"] for r in s["per_problem"]] == [8, 2, 3, 8, 5, 1, 2]
    assert s["avg@8_last_number"] == pytest.approx(29 / 56) and s["avg@8"] == pytest.approx(19 / 56)
    for k in (1, 4, 8):
        iv = pass_at_k_interval(TABLE_A, k)  # same order, resamples and seed as eksft eval: the same interval
        assert s["intervals"][f"pass@{k}"] == pytest.approx([iv.low, iv.high], abs=1e-12)
        assert s["pass_at_k_band"][str(k)] == pytest.approx([iv.low, iv.high], abs=1e-12)
    assert "2000 resamples, seed 0" in s["intervals"]["method"]
    for key in ("avg@8", "distinct_answers_per_problem", "mean_token_entropy", "distinct_2", "no_answer_fraction"):
        lo, hi = s["intervals"][key]
        assert lo <= s[key] + 1e-12 and s[key] <= hi + 1e-12, key
    assert set(s["pass_at_k_curve"]) == {str(k) for k in range(1, 9)}
