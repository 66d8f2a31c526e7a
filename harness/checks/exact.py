"""`exact`: the output equals an expected answer (after optional stripping and case folding)."""

from __future__ import annotations

from harness.checks import Case, CheckSpec, Outcome, expected_list, generative_check


class ExactParams(CheckSpec):
    strip: bool = True
    ignore_case: bool = False


def _normal(text: str, params: ExactParams) -> str:
    text = text.strip() if params.strip else text
    return text.casefold() if params.ignore_case else text


def score_exact(output: str, case: Case, params: ExactParams) -> Outcome:
    answers = expected_list(case.fields.get("expected"))
    hit = any(_normal(output, params) == _normal(answer, params) for answer in answers)
    return Outcome(output, {"acc": float(hit)}, hit, " | ".join(answers))


CHECK = generative_check("exact", ExactParams, ("acc",), score_exact)
