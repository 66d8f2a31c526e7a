"""`choice`: log-likelihood multiple choice, scored exactly as lm-eval scores it.

Each choice is appended to the prompt after `target_delimiter` (lm-eval's default " "); the
prediction is the choice with the highest summed log-likelihood (`acc`), or the highest
log-likelihood per character of the choice (`acc_norm`). Ties go to the first choice, as
numpy's argmax does in lm-eval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from harness.checks import Case, CheckSpec, CheckType, EvalContext, Outcome


class ChoiceParams(CheckSpec):
    choices_field: str = "choices"
    answer_field: str = "answer"  # the gold choice: its index, or its text
    target_delimiter: str = " "


@dataclass(frozen=True)
class ChoicePrediction:
    pred: int  # argmax of summed log-likelihood
    pred_norm: int  # argmax of log-likelihood divided by the choice's length in characters
    logprobs: list[float]


def _argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))


def predict(logprobs: Sequence[float], choices: Sequence[str]) -> ChoicePrediction:
    """lm-eval's multiple_choice arithmetic for one item."""
    normalised = [
        lp / len(choice) if choice else float("-inf")
        for lp, choice in zip(logprobs, choices, strict=True)
    ]
    return ChoicePrediction(_argmax(logprobs), _argmax(normalised), list(logprobs))


def gold_index(case: Case, params: ChoiceParams) -> int:
    """The index of the right choice; ValueError when the data names none of them."""
    raw_choices = case.fields[params.choices_field]
    if not isinstance(raw_choices, list) or not raw_choices:
        raise ValueError(f"`{params.choices_field}` must be a non-empty list")
    choices = [str(c) for c in raw_choices]
    answer = case.fields[params.answer_field]
    if isinstance(answer, int) and not isinstance(answer, bool):
        if not 0 <= answer < len(choices):
            raise ValueError(f"answer index {answer} is outside the {len(choices)} choices")
        return answer
    if str(answer) not in choices:
        raise ValueError(f"answer {answer!r} is not one of the choices {choices}")
    return choices.index(str(answer))


def predictions(
    cases: Sequence[Case], params: ChoiceParams, ctx: EvalContext
) -> list[ChoicePrediction]:
    """Score every (case, choice) pair in one batched log-likelihood pass."""
    options = [[str(c) for c in case.fields[params.choices_field]] for case in cases]
    requests = [
        (case.prompt, params.target_delimiter + choice)
        for case, choices in zip(cases, options, strict=True)
        for choice in choices
    ]
    results = iter(ctx.engine.loglikelihood(requests))
    return [predict([next(results).logprob for _ in choices], choices) for choices in options]


def run_choice(cases: Sequence[Case], params: ChoiceParams, ctx: EvalContext) -> list[Outcome]:
    golds = [gold_index(case, params) for case in cases]
    outcomes = []
    for case, gold, prediction in zip(cases, golds, predictions(cases, params, ctx), strict=True):
        choices = [str(c) for c in case.fields[params.choices_field]]
        scores = {
            "acc": float(prediction.pred == gold),
            "acc_norm": float(prediction.pred_norm == gold),
        }
        details = {"logprobs": prediction.logprobs, "pred_norm": choices[prediction.pred_norm]}
        outcomes.append(
            Outcome(
                choices[prediction.pred], scores, prediction.pred == gold, choices[gold], details
            )
        )
    return outcomes


CHECK = CheckType(
    "choice",
    ChoiceParams,
    ("acc", "acc_norm"),
    run_choice,
    required_fields=lambda p: {p.choices_field, p.answer_field},
    validate_case=gold_index,
    uses_chat_template=False,
)
