"""Check types: how a model's answers to golden cases become scores.

A check type is one module registered by name. It declares a pydantic `Params` model (the keys a
suite may write under `- type: <name>`, validated as strictly as built-in keys), the metrics it
produces, and a `run` function from cases to outcomes. Generative checks only write a per-case
`score` function; `generative_check` wraps it with batched generation.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import Field, model_validator

from harness.registry import Registry
from harness.schema_base import Strict


class GenerationOverride(Strict):
    """Per-check changes to the suite's `generation` block."""

    max_new_tokens: int | None = Field(None, ge=1, le=32768)
    stop: list[str] | None = None
    chat_template: bool | None = None
    system_prompt: str | None = None


class CheckSpec(Strict):
    """Keys every check accepts. A check's own `Params` subclasses this."""

    name: str | None = Field(None, description="Label for this check's metrics (default: its type)")
    data: str | None = Field(None, description="Name of a data set under the suite's `data:`")
    cases: list[dict[str, Any]] | None = Field(None, description="Inline cases (rows)")
    prompt: str | None = Field(None, description="Prompt template with {field} placeholders")
    generation: GenerationOverride | None = None

    @model_validator(mode="after")
    def _one_source(self) -> CheckSpec:
        if (self.data is None) == (self.cases is None):
            raise ValueError(
                "give exactly one of `data` (a data set name) or `cases` (inline rows)"
            )
        return self

    @property
    def label(self) -> str:
        return self.name or str(getattr(self, "type", "check"))


@dataclass(frozen=True)
class Case:
    """One row of a check's data, with its prompt rendered."""

    id: str
    prompt: str
    fields: Mapping[str, Any]
    source: str  # "file:line" or "suite.yaml:line" for messages


@dataclass(frozen=True)
class Outcome:
    """What a check made of one case."""

    output: str
    scores: dict[str, float]
    passed: bool | None = None
    expected: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalContext:
    """What a check may use while it runs."""

    engine: Any  # harness.engine.Engine; kept untyped so validation never imports torch
    generation: Any  # harness.engine.GenerationSettings (suite defaults + the check's override)


@dataclass(frozen=True)
class Ratio:
    """A metric aggregated as transform(sum(numerator) / sum(denominator)) over cases.

    The mean of per-case scores is the common case (denominator 1); perplexity is
    exp(sum(-logprob) / sum(tokens)). The same form gives vectorised bootstrap intervals.
    """

    numerator: Callable[[Outcome], float]
    denominator: Callable[[Outcome], float] = lambda _: 1.0
    transform: Callable[[Any], Any] = lambda x: x


P = TypeVar("P", bound=CheckSpec)


@dataclass(frozen=True)
class CheckType(Generic[P]):
    name: str
    params: type[P]
    metrics: tuple[str, ...]
    run: Callable[[Sequence[Case], P, EvalContext], list[Outcome]]
    required_fields: Callable[[P], set[str]] = lambda _: set()
    prompt_field: str = "prompt"
    lower_is_better: frozenset[str] = frozenset()
    aggregators: Mapping[str, Ratio] = field(default_factory=dict)
    # Raises ValueError for a case the check cannot score, so bad data fails before anything runs.
    validate_case: Callable[[Case, P], object] = lambda _case, _params: None

    def aggregator(self, metric: str) -> Ratio:
        return self.aggregators.get(metric) or Ratio(lambda o: o.scores[metric])

    def fields_needed(self, params: P) -> set[str]:
        parsed = string.Formatter().parse(params.prompt or "")
        template_fields = {name for _, name, _, _ in parsed if name}
        prompt_fields = template_fields if params.prompt else {self.prompt_field}
        return prompt_fields | self.required_fields(params)


CHECKS: Registry[CheckType[Any]] = Registry("check type", "harness.checks")


def register(check: CheckType[Any]) -> CheckType[Any]:
    return CHECKS.register(check.name)(check)


def generative_check(
    name: str,
    params: type[P],
    metrics: tuple[str, ...],
    *,
    required_fields: Callable[[P], set[str]] = lambda _: {"expected"},
) -> Callable[[Callable[[str, Case, P], Outcome]], Callable[[str, Case, P], Outcome]]:
    """Register a check that generates once per case and scores each output with `score`."""

    def decorator(score: Callable[[str, Case, P], Outcome]) -> Callable[[str, Case, P], Outcome]:
        def run(cases: Sequence[Case], spec: P, ctx: EvalContext) -> list[Outcome]:
            outputs = ctx.engine.generate([case.prompt for case in cases], ctx.generation)
            return [score(output, case, spec) for output, case in zip(outputs, cases, strict=True)]

        register(CheckType(name, params, metrics, run, required_fields))
        return score

    return decorator


def expected_list(value: Any) -> list[str]:
    """A case's expected answer(s) as strings: a scalar or a list in the data."""
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [str(value)]


# Built-in check types register themselves on import.
from harness.checks import (  # noqa: E402
    choice,
    contains,
    exact,
    json_schema,
    perplexity,
    qa,
    regex,
)

__all__ = [
    "CHECKS",
    "Case",
    "CheckSpec",
    "CheckType",
    "EvalContext",
    "Outcome",
    "choice",
    "contains",
    "exact",
    "json_schema",
    "perplexity",
    "qa",
    "regex",
]
