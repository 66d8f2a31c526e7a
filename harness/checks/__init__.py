"""Check types: how a model's answers to golden cases become scores.

A check type is a `CheckType`: a pydantic `Params` model (the keys a suite may write under
`- type: <name>`, validated as strictly as built-in keys), the metrics it produces, and a `run`
function from cases to outcomes; `generative_check` makes one from a per-output `score`
function. Built-in types live one per module here (`exact.py` holds `CHECK`), and are loaded on
first use from the registry, exactly as a plugin's entry point (group `harness.checks`) is.
"""

from harness.checks._base import (
    CHECKS,
    Case,
    CheckSpec,
    CheckType,
    EvalContext,
    GenerationOverride,
    cases_of,
    expected_list,
    generative_check,
    register,
)
from harness.core.scores import Corpus, Outcome, Ratio

__all__ = [
    "CHECKS",
    "Case",
    "CheckSpec",
    "CheckType",
    "Corpus",
    "EvalContext",
    "GenerationOverride",
    "Outcome",
    "Ratio",
    "cases_of",
    "expected_list",
    "generative_check",
    "register",
]
