"""`regex`: the output matches a pattern (the check's `pattern`, or each case's own)."""

from __future__ import annotations

import re

from pydantic import field_validator

from harness.checks import Case, CheckSpec, Outcome, generative_check


class RegexParams(CheckSpec):
    pattern: str | None = None  # when absent, each case's `pattern` field is used
    ignore_case: bool = False
    fullmatch: bool = False  # the whole (stripped) output must match, not just a part

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from exc
        return pattern


def _needs(params: RegexParams) -> set[str]:
    return set() if params.pattern else {"pattern"}


def score_regex(output: str, case: Case, params: RegexParams) -> Outcome:
    pattern = params.pattern or str(case.fields["pattern"])
    flags = re.IGNORECASE if params.ignore_case else 0
    try:
        match = re.fullmatch if params.fullmatch else re.search
        hit = match(pattern, output.strip() if params.fullmatch else output, flags) is not None
    except re.error as exc:  # a per-case pattern is only known at run time
        return Outcome(output, {"acc": 0.0}, False, pattern, {"error": f"bad pattern: {exc}"})
    return Outcome(output, {"acc": float(hit)}, hit, pattern)


CHECK = generative_check("regex", RegexParams, ("acc",), score_regex, required_fields=_needs)
