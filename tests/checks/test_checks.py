"""Scoring rules of the built-in checks, on hand-made outputs (no model needed)."""

from __future__ import annotations

import pytest

from harness.checks import Case, Outcome, Ratio
from harness.checks.choice import ChoiceParams, gold_index, predict
from harness.checks.contains import ContainsParams, score_contains
from harness.checks.exact import ExactParams, score_exact
from harness.checks.json_schema import JsonParams, score_json
from harness.checks.qa import QaParams, exact_match, normalize_answer, score_qa, token_f1
from harness.checks.regex import RegexParams, score_regex
from harness.evaluation import estimate


def case(**fields: object) -> Case:
    return Case("1", str(fields.get("prompt", "p")), fields, "test:1")


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("The Cat", "cat"),
        ("  a  cat,  AN apple! ", "cat apple"),
        ("theatre", "theatre"),  # articles only as whole words
        ("Hello, world.", "hello world"),
        ("", ""),
        ("...", ""),
    ],
)
def test_squad_normalisation(text: str, normal: str) -> None:
    assert normalize_answer(text) == normal


def test_squad_em_and_f1() -> None:
    assert exact_match("The Eiffel Tower!", "eiffel tower") == 1.0
    assert token_f1("the cat sat", "a cat sat down") == pytest.approx(
        2 * (2 / 2) * (2 / 3) / (2 / 2 + 2 / 3)
    )
    assert token_f1("dog", "cat") == 0.0
    assert token_f1("cat cat", "cat") == pytest.approx(
        2 * 0.5 * 1 / 1.5
    )  # repeated tokens count once each


def test_qa_takes_the_best_gold_and_handles_unanswerable() -> None:
    params = QaParams(data="d")
    outcome = score_qa(" Paris, France", case(answers=["Lyon", "Paris"]), params)
    assert outcome.scores == {"em": 0.0, "f1": pytest.approx(2 / 3), "contains": 1.0}
    empty = score_qa("", case(answers=[]), params)  # SQuAD v2: no answer is right when none exists
    assert empty.scores == {"em": 1.0, "f1": 1.0, "contains": 1.0}
    unanswerable = score_qa("something", case(answers=["", "the"]), params)
    assert unanswerable.scores == {"em": 0.0, "f1": 0.0, "contains": 0.0}


def test_qa_contains_scores_a_chat_models_sentence_by_its_answer() -> None:
    params = QaParams(data="d")
    chatty = score_qa("The capital of Japan is Tokyo.", case(answers=["Tokyo"]), params)
    assert chatty.scores["em"] == 0.0 and chatty.scores["f1"] == pytest.approx(1 / 3)
    assert chatty.scores["contains"] == 1.0 and chatty.passed is False  # a pass is EM 1
    assert score_qa("Parisian cafés", case(answers=["Paris"]), params).scores["contains"] == 0.0
    two_words = score_qa("It is New York, of course", case(answers=["new york"]), params)
    assert two_words.scores["contains"] == 1.0


def test_exact_and_contains() -> None:
    assert score_exact(" 5\n", case(expected="5"), ExactParams(data="d")).scores["acc"] == 1.0
    assert score_exact(
        "Five", case(expected=["5", "five"]), ExactParams(data="d", ignore_case=True)
    ).passed
    assert not score_exact(" 5", case(expected="5"), ExactParams(data="d", strip=False)).passed
    assert score_contains(
        "it is Paris.", case(expected="paris"), ContainsParams(data="d", ignore_case=True)
    ).passed
    assert not score_contains(
        "Paris", case(expected=["Paris", "Lyon"]), ContainsParams(data="d", all=True)
    ).passed


def test_regex_from_params_or_case() -> None:
    assert score_regex(" 42 ", case(), RegexParams(data="d", pattern=r"\d+", fullmatch=True)).passed
    assert not score_regex(
        "42 apples", case(), RegexParams(data="d", pattern=r"\d+", fullmatch=True)
    ).passed
    assert score_regex("ABC", case(pattern="abc"), RegexParams(data="d", ignore_case=True)).passed
    broken = score_regex("x", case(pattern="(x"), RegexParams(data="d"))
    assert broken.passed is False and "bad pattern" in broken.details["error"]


def test_json_validity_and_schema() -> None:
    schema = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
    params = JsonParams.model_validate({"data": "d", "schema": schema})
    assert score_json('{"name": "x"}', case(), params).scores == {"valid": 1.0, "schema": 1.0}
    assert score_json('{"name": 3}', case(), params).scores == {"valid": 1.0, "schema": 0.0}
    assert score_json("{name: x}", case(), params).scores == {"valid": 0.0, "schema": 0.0}
    extracting = JsonParams.model_validate({"data": "d", "extract": True})
    assert score_json('Sure! {"a": [1, 2]} done', case(), extracting).passed


def test_choice_arithmetic_matches_lm_eval() -> None:
    # acc: highest summed log-likelihood; acc_norm: highest per character; ties -> first.
    prediction = predict([-4.0, -3.0, -9.0], ["a", "b", "longer answer"])
    assert (prediction.pred, prediction.pred_norm) == (1, 2)
    assert predict([-1.0, -1.0], ["x", "y"]).pred == 0
    params = ChoiceParams(data="d")
    assert gold_index(case(choices=["a", "b"], answer=1), params) == 1
    assert gold_index(case(choices=["a", "b"], answer="b"), params) == 1
    with pytest.raises(ValueError, match="not one of the choices"):
        gold_index(case(choices=["a", "b"], answer="c"), params)
    with pytest.raises(ValueError, match="outside"):
        gold_index(case(choices=["a", "b"], answer=2), params)


def test_bootstrap_interval_is_seeded_and_brackets_the_mean() -> None:
    outcomes = [Outcome("", {"acc": float(i % 3 != 0)}) for i in range(300)]
    ratio = Ratio(lambda o: o.scores["acc"])
    first, second = estimate(outcomes, ratio, seed=1), estimate(outcomes, ratio, seed=1)
    assert first == second
    assert first.ci_low < first.value < first.ci_high
    assert first.value == pytest.approx(2 / 3)
    assert 0.03 < first.ci_high - first.ci_low < 0.15  # about ±1.96·sqrt(p(1-p)/n) = ±0.053
    constant = estimate([Outcome("", {"acc": 1.0})] * 20, ratio)
    assert (constant.ci_low, constant.ci_high) == (1.0, 1.0)
