"""`qa`: SQuAD exact match and token F1, max over the gold answers, and whether the answer is in
the output at all.

`em` and `f1` measure a short answer ("Tokyo"). A chat model answers in a sentence ("The capital
of Japan is Tokyo."): EM 0 and F1 0.33, so an `f1` gate would measure verbosity. `contains` is 1
when the normalised gold answer appears, as whole words, in the normalised output: the metric to
gate chat models on. A case passes when its EM is 1.

The normalisation and F1 follow the official SQuAD v2.0 evaluation script. It is hand-written
because no maintained package exposes it offline: `evaluate`'s squad metric downloads its code
from the hub, and transformers 5 dropped `squad_metrics`.
"""

from __future__ import annotations

import re
import string
from collections import Counter

from harness.checks import Case, CheckSpec, Outcome, expected_list, generative_check

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


class QaParams(CheckSpec):
    answers_field: str = "answers"  # the row field holding the gold answer or list of answers


def normalize_answer(text: str) -> str:
    """Lower case, drop punctuation and the articles a/an/the, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:  # unanswerable: right only when both are empty
        return float(pred_tokens == gold_tokens)
    common = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred_tokens), common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def answer_in_output(prediction: str, gold: str) -> float:
    """1.0 when the normalised gold answer occurs as whole words in the normalised prediction
    ("Tokyo" in "The capital of Japan is Tokyo."; not "Paris" in "Parisian")."""
    gold_tokens = normalize_answer(gold).split()
    pred_tokens = normalize_answer(prediction).split()
    if not gold_tokens:  # unanswerable: right only when the output is empty too, as EM
        return float(not pred_tokens)
    width = len(gold_tokens)
    windows = (pred_tokens[i : i + width] for i in range(len(pred_tokens) - width + 1))
    return float(any(window == gold_tokens for window in windows))


def gold_answers(answers: list[str]) -> list[str]:
    """Answers that survive normalisation; [""] (unanswerable) when none does, as SQuAD v2."""
    kept = [a for a in answers if normalize_answer(a)]
    return kept or [""]


def _answers(case: Case, params: QaParams) -> list[str]:
    return gold_answers(expected_list(case.fields[params.answers_field]))


def _needs(params: QaParams) -> set[str]:
    return {params.answers_field}


def score_qa(output: str, case: Case, params: QaParams) -> Outcome:
    golds = _answers(case, params)
    em = max(exact_match(output, g) for g in golds)
    f1 = max(token_f1(output, g) for g in golds)
    contains = max(answer_in_output(output, g) for g in golds)
    scores = {"em": em, "f1": f1, "contains": contains}
    return Outcome(output, scores, em == 1.0, " | ".join(golds))


CHECK = generative_check("qa", QaParams, ("em", "f1", "contains"), score_qa, required_fields=_needs)
