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
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from pydantic import Field, model_validator

from harness.checks._sampling import run_sampled
from harness.core.registry import Registry
from harness.core.scores import Outcome, Ratio
from harness.core.strict import Name, Strict
from harness.generation import Engine, GenerationSettings


class GenerationOverride(Strict):
    """Per-check changes to the suite's `generation` block."""

    max_new_tokens: int | None = Field(None, ge=1, le=32768)
    stop: list[str] | None = None
    chat_template: bool | None = None
    system_prompt: str | None = None
    engine: Literal["auto", "transformers", "vllm"] | None = None


class CheckSpec(Strict):
    """Keys every check accepts. A check's own `Params` subclasses this."""

    name: Name | None = Field(
        None, description="Label for this check's metrics (default: its type)"
    )
    data: str | None = Field(None, description="Name of a data set under the suite's `data:`")
    cases: list[dict[str, Any]] | None = Field(None, description="Inline cases (rows)")
    prompt: str | None = Field(None, description="Prompt template with {field} placeholders")
    generation: GenerationOverride | None = None
    samples: int = Field(
        1, ge=1, le=1000, description="Sampled generations per case (needs temperature)"
    )
    temperature: float | None = Field(
        None, gt=0, le=5, description="Sampling temperature for `samples`"
    )

    @model_validator(mode="after")
    def _one_source(self) -> CheckSpec:
        if (self.data is None) == (self.cases is None):
            raise ValueError(
                "give exactly one of `data` (a data set name) or `cases` (inline rows)"
            )
        if self.samples > 1 and self.temperature is None:
            raise ValueError(
                "`samples` above 1 needs a `temperature` (greedy decoding repeats itself)"
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


@dataclass
class EvalContext:
    """What a check may use while it runs."""

    engine: Engine  # the model behind its output cache
    generation: GenerationSettings  # the suite's defaults with the check's override applied
    # When a candidate is evaluated: the base's output for each case id of this check (pairwise
    # judges compare against it). Empty while the base itself is evaluated.
    base_outputs: Mapping[str, str] = field(default_factory=dict)
    seed: int = 0


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
    # How far one case's score can range, per metric (gates never claim more certainty than n
    # cases allow for changes of that size; harness.evaluation._evidence). `default_range` covers the rest;
    # None: unbounded or unknown, judged from the spread of the scores seen.
    ranges: Mapping[str, tuple[float, float] | None] = field(default_factory=dict)
    default_range: tuple[float, float] | None = (0.0, 1.0)
    # Raises ValueError for a case the check cannot score, so bad data fails before anything runs.
    validate_case: Callable[[Case, P], object] = lambda _case, _params: None
    # Generative checks only: one output scored on its own (GRPO rewards use it).
    score: Callable[[str, Case, P], Outcome] | None = None
    # The prompt of a row when the suite gives no `prompt:` template (glue builds its own from
    # the task's fields); None: the row's `prompt_field`.
    default_prompt: Callable[[Mapping[str, Any], P], str] | None = None
    # The check makes its cases at run time (lm_eval reads its task's documents): the suite gives
    # no `data`/`cases`, and each Outcome carries its `case_id` and `prompt`.
    own_cases: bool = False
    # A suite flag that must be true for this check to be allowed (python: "allow_python").
    opt_in: str | None = None
    # Whether the suite's chat template and system prompt wrap this check's prompts. False for
    # checks that score raw text by log-likelihood (choice, perplexity), as lm-eval does; their
    # stored generation settings then say `chat_template: false`.
    uses_chat_template: bool = True
    # Narrows the check to one suite entry at planning time (glue keeps the metrics of its task;
    # lm_eval learns the suite's directory). None: the check as registered.
    specialise: Callable[[CheckType[P], P, Path], CheckType[P]] | None = None
    # What only a look beyond the suite file can tell is wrong with an entry (an unset key
    # variable, an lm-eval task with no per-sample score), as (path within the entry, message):
    # an input error before anything runs. Given the suite's directory; skipped by `harness gate`.
    problems: Callable[[P, Path], list[tuple[tuple[str | int, ...], str]]] = (
        lambda _params, _suite_dir: []
    )
    # Whether this check, as configured, can evaluate a sequence classifier (a reward model,
    # a classification head): validation refuses other checks on such candidates.
    scores_classifiers: Callable[[P], bool] = lambda _params: False

    def metrics_for(self, params: CheckSpec) -> tuple[str, ...]:
        """This check's metrics as configured: sampled checks add pass@k and the flaky rate."""
        if params.samples > 1:
            return (*self.metrics, f"pass@{params.samples}", "flaky")
        return self.metrics

    def value_range(self, metric: str) -> tuple[float, float] | None:
        """The per-case range of `metric` (pass@k and the flaky rate are shares)."""
        if metric.startswith("pass@") or metric == "flaky":
            return (0.0, 1.0)
        return self.ranges.get(metric, self.default_range)

    def aggregator(self, metric: str) -> Ratio:
        return self.aggregators.get(metric) or Ratio(lambda o: o.scores[metric])

    def fields_needed(self, params: P) -> set[str]:
        parsed = string.Formatter().parse(params.prompt or "")
        template_fields = {name for _, name, _, _ in parsed if name}
        if params.prompt:
            prompt_fields = template_fields
        elif self.default_prompt is not None or self.own_cases:
            prompt_fields = set()
        else:
            prompt_fields = {self.prompt_field}
        return prompt_fields | self.required_fields(params)

    def prompt_for(self, fields: Mapping[str, Any], params: P) -> str:
        """The prompt of one row: the suite's template, the check's default, or the row's field."""
        if params.prompt:
            return params.prompt.format_map(fields)
        if self.default_prompt is not None:
            return self.default_prompt(fields, params)
        return str(fields[self.prompt_field])

    def planned(self, params: P, suite_dir: Path) -> CheckType[P]:
        """This check as it runs for one suite entry (see `specialise`)."""
        return self if self.specialise is None else self.specialise(self, params, suite_dir)


# The built-in check types: "module:attr" targets, loaded on first use exactly as a plugin's
# entry point (group `harness.checks`) is.
BUILTIN_CHECKS = {
    name: f"harness.checks.{module}:CHECK"
    for name, module in (
        ("bertscore", "bertscore"), ("bleu", "bleu"), ("choice", "choice"), ("chrf", "chrf"),
        ("contains", "contains"), ("evaluate", "evaluate_check"), ("exact", "exact"),
        ("glue", "glue"), ("json", "json_schema"), ("judge", "judge"), ("lm_eval", "lm_eval_check"),
        ("perplexity", "perplexity"), ("preference", "preference"), ("python", "python_check"),
        ("qa", "qa"), ("regex", "regex"), ("rouge", "rouge"), ("similarity", "similarity"),
    )
}  # fmt: skip
CHECKS: Registry[CheckType[Any]] = Registry("check type", "harness.checks", BUILTIN_CHECKS)


def register(check: CheckType[Any]) -> CheckType[Any]:
    """Add a check type made in code (a plugin can also name its CheckType in an entry point)."""
    return CHECKS.register(check.name)(check)


def generative_check(
    name: str,
    params: type[P],
    metrics: tuple[str, ...],
    score: Callable[[str, Case, P], Outcome],
    *,
    required_fields: Callable[[P], set[str]] = lambda _: {"expected"},
) -> CheckType[P]:
    """A check that generates once per case (k times with `samples: k`) and scores each
    output on its own with `score`."""

    def run(cases: Sequence[Case], spec: P, ctx: EvalContext) -> list[Outcome]:
        if spec.samples > 1:
            return run_sampled(cases, spec, ctx, score)
        outputs = ctx.engine.generate([case.prompt for case in cases], ctx.generation)
        return [score(output, case, spec) for output, case in zip(outputs, cases, strict=True)]

    return CheckType(name, params, metrics, run, required_fields, score=score)


def cases_of(planned: Sequence[Case], outcomes: Sequence[Outcome]) -> list[Case]:
    """The case of each outcome: the planned ones, or those a check made itself (`own_cases`)."""
    if planned or not outcomes:
        return list(planned)
    return [Case(o.case_id or str(i + 1), o.prompt or "", {}, "") for i, o in enumerate(outcomes)]


def expected_list(value: Any) -> list[str]:
    """A case's expected answer(s) as strings: a scalar or a list in the data."""
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [str(value)]
