"""Answer checking with math-verify (gold first): LaTeX gold, 51.0 vs 51, several boxed answers, no boxed answer,
unparsable gold. Runs on CPU in the main thread (math-verify's signal-based time limit); about a second.
"""

import pytest

from eksft.eval import check_answer, parse_gold
from eksft.eval.verify import last_boxed


def test_latex_gold_is_wrapped_and_matches_equivalent_forms():
    assert check_answer("\\frac{1}{2}", "so \\boxed{0.5}").correct
    assert check_answer("\\frac{1}{2}", "so \\boxed{\\dfrac12}").correct
    assert check_answer("10\\sqrt{3}", "\\boxed{10 \\sqrt 3}").correct
    assert not check_answer("\\frac{1}{2}", "\\boxed{\\frac{1}{3}}").correct


def test_float_and_integer_forms_agree_both_ways():
    assert check_answer("51.0", "The answer is \\boxed{51}.").correct
    assert check_answer("51", "The answer is \\boxed{51.0}.").correct
    assert not check_answer("51", "\\boxed{52}").correct


def test_several_boxed_answers_take_the_last():
    v = check_answer("51", "First \\boxed{3}, then corrected: \\boxed{51}")
    assert v.correct and v.answer == "51"
    assert not check_answer("3", "First \\boxed{3}, then corrected: \\boxed{51}").correct
    # math-verify's raw parse merges every boxed value into one set, which then matches neither
    assert not check_answer("51", "\\boxed{3} then \\boxed{51}", extraction="math_verify").correct


def test_no_boxed_answer_is_wrong_unless_raw_math_verify_is_asked_for():
    v = check_answer("51", "I think the answer is 51.")
    assert v.answer is None and not v.correct
    assert check_answer("51", "I think the answer is 51.", extraction="math_verify").correct
    assert not check_answer("51", "\\boxed{5").correct  # unclosed: a truncated completion


def test_nested_braces_in_boxed():
    assert last_boxed("x \\boxed{\\frac{1}{2}} y") == "\\frac{1}{2}"
    assert last_boxed("nothing here") is None


def test_unparsable_gold_is_an_error():
    with pytest.raises(ValueError, match="does not parse"):
        parse_gold("???")
    assert parse_gold("$-4$")[0] == -4


def test_last_number_extraction_tells_format_from_skill():
    from eksft.eval.verify import last_number

    assert [
        last_number(t)
        for t in (
            "the answer is 42.",
            "10-3 so 7",
            "1,000 apples",
            "so -5",
            "it is 3/4",
            "2.5e3",
            "no digits",
            "step2 and 3.5.",
        )
    ] == ["42", "7", "1000", "-5", "3/4", None, None, "3.5"]
    # right number, no box: a format failure under last_boxed, correct under last_number
    assert check_answer("51", "I think the answer is 51.", extraction="last_number").correct
    assert not check_answer("51", "I think the answer is 51.").correct
    assert not check_answer("51", "51 is not it, it is 52", extraction="last_number").correct
    assert check_answer("\\frac{1}{2}", "so half: 1/2", extraction="last_number").correct
    v = check_answer("5", "nothing numeric", extraction="last_number")
    assert v.answer is None and not v.correct


def test_rescore_stored_samples():
    from eksft.eval import rescore

    samples = [
        {"gold": "7", "completion": "so 7"},
        {"gold": "7", "completion": "\\boxed{7}"},
        {"gold": "7", "completion": "\\boxed{7} or maybe 8"},
    ]
    assert rescore(samples, "last_number") == [True, True, False]
    assert rescore(samples, "last_boxed") == [False, True, True]
