"""Built-in synthetic data: training records are disjoint from every evaluation set (by seed and by a
de-duplication check on problem text), solutions end in a correct \\boxed{answer}, numbers are normalised,
generation is deterministic. CPU only; a few seconds (reasoning-gym generation).
"""

import pytest

from eksft.data import synthetic
from eksft.data.synthetic import BENCHMARKS, evaluation_problems, normalize_number, problem_key, training_records
from eksft.eval import check_answer


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_training_records_are_disjoint_from_every_evaluation_set(name):
    eval_keys = {problem_key(p["problem"]) for b in BENCHMARKS for p in evaluation_problems(b)}
    assert len(eval_keys) > 0.9 * synthetic.EVAL_SIZE * len(BENCHMARKS)  # sets are non-trivial
    train = training_records(name, 300)
    assert len(train) == 300
    train_keys = [problem_key(r["problem"]) for r in train]
    assert not set(train_keys) & eval_keys
    assert len(set(train_keys)) == len(train_keys)


def test_deduplication_removes_an_evaluation_problem_even_from_a_colliding_stream(monkeypatch):
    # Force the training stream to equal the evaluation stream: only the text check can keep them apart.
    evals = evaluation_problems("arithmetic-easy")
    monkeypatch.setattr(
        synthetic,
        "_items",
        lambda name, seed, size, max_chars: (
            [{"problem": p["problem"], "answer": p["answer"], "solution": f"\\boxed{{{p['answer']}}}"} for p in evals]
            + [{"problem": "Calculate 1000 + 1.", "answer": "1001", "solution": "\\boxed{1001}"}] * size
        ),
    )
    records = training_records("arithmetic-easy", 1)
    assert [r["problem"] for r in records] == ["Calculate 1000 + 1."]


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_solutions_are_short_and_box_the_right_answer(name):
    for r in training_records(name, 40):
        assert r["completion"].rstrip().endswith(f"\\boxed{{{r['answer']}}}.")
        assert len(r["completion"]) <= 260
        assert check_answer(r["answer"], r["completion"]).correct
        assert r["prompt"].startswith(r["problem"]) and r["prompt"].endswith(synthetic.INSTRUCTION)
        assert "####" not in r["completion"]


def test_arithmetic_answers_are_correct():
    for p in evaluation_problems("arithmetic-hard", 50):
        expr = p["problem"].removeprefix("Calculate ").rstrip(".")
        assert eval(expr) == int(p["answer"])  # noqa: S307 - our own generated digits and operators


def test_gsm_levels_differ_in_steps_and_are_deterministic():
    easy, hard = evaluation_problems("gsm_symbolic-easy", 20), evaluation_problems("gsm_symbolic-hard", 20)
    assert easy == evaluation_problems("gsm_symbolic-easy", 20)
    assert not {p["problem"] for p in easy} & {p["problem"] for p in hard}
    assert training_records("gsm_symbolic", 5) == training_records("gsm_symbolic", 5)


def test_number_normalisation():
    assert normalize_number("51.0") == "51"
    assert normalize_number("6196.50") == "6196.5"
    assert normalize_number("1,000") == "1000"
    assert normalize_number("-4") == "-4"
    with pytest.raises(ValueError, match="EVAL_SEED"):
        training_records("arithmetic-easy", 1, seed=synthetic.EVAL_SEED)
