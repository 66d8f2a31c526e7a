"""`contains`: the output contains the expected text (any of several, or all with `all: true`)."""

from __future__ import annotations

from harness.checks import Case, CheckSpec, Outcome, expected_list, generative_check


class ContainsParams(CheckSpec):
    ignore_case: bool = False
    all: bool = False  # every expected string must appear, not just one


def score_contains(output: str, case: Case, params: ContainsParams) -> Outcome:
    answers = expected_list(case.fields.get("expected"))
    haystack = output.casefold() if params.ignore_case else output
    found = [(a.casefold() if params.ignore_case else a) in haystack for a in answers]
    hit = bool(found) and (all(found) if params.all else any(found))
    return Outcome(output, {"acc": float(hit)}, hit, " | ".join(answers))


CHECK = generative_check("contains", ContainsParams, ("acc",), score_contains)
