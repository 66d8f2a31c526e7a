"""`evaluate`: any Hugging Face `evaluate` metric, where it can be loaded.

`evaluate.load` fetches a metric's code from the Hugging Face hub unless it is cached or given
as a local script or directory, so offline the check fails with a message naming the metric and
the cause. Each case is scored on its own (`compute` with one prediction and its references) and
a metric is the mean over cases, which is right for per-example metrics (exact match, accuracy,
ROUGE); corpus-level metrics such as BLEU or chrF have their own checks (`bleu`, `chrf`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import Field

from harness.checks import Case, CheckSpec, CheckType, EvalContext, Outcome


class EvaluateParams(CheckSpec):
    metric: str = Field(description="An evaluate metric name, or a local metric script/directory")
    config_name: str | None = None
    references_field: str = "expected"
    keys: list[str] | None = Field(
        None, description="Which keys of the metric's result to report (default: the metric's name)"
    )
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Extra compute() arguments")
    single_reference: bool = Field(
        True, description="Pass a single reference per case (the first), not a list"
    )


class MetricUnavailable(RuntimeError):
    """An `evaluate` metric that cannot be loaded here."""


def result_keys(params: EvaluateParams) -> tuple[str, ...]:
    return tuple(params.keys or [Path(params.metric).stem.replace("-", "_")])


def load_metric(params: EvaluateParams) -> Any:
    """evaluate.load, or MetricUnavailable saying which metric and why."""
    try:
        import evaluate

        return evaluate.load(params.metric, params.config_name)
    except Exception as exc:  # network, missing script, hub errors: all mean "not here"
        raise MetricUnavailable(
            f"evaluate metric {params.metric!r} cannot be loaded: {type(exc).__name__}: {exc}. "
            "`evaluate` downloads a metric's code from the Hugging Face hub; without it, point "
            "`metric:` at a local copy of the metric's directory or script, or use the built-in "
            "rouge, bleu, chrf, bertscore or qa checks."
        ) from exc


def run_evaluate(cases: Sequence[Case], params: EvaluateParams, ctx: EvalContext) -> list[Outcome]:
    metric = load_metric(params)  # before generating: fail fast when it cannot be had
    outputs = ctx.engine.generate([case.prompt for case in cases], ctx.generation)
    keys = result_keys(params)
    outcomes = []
    for output, case in zip(outputs, cases, strict=True):
        reference = case.fields[params.references_field]
        if params.single_reference and isinstance(reference, list):
            reference = reference[0] if reference else ""
        result = metric.compute(predictions=[output], references=[reference], **params.kwargs)
        missing = [k for k in keys if k not in result]
        if missing:
            raise ValueError(
                f"evaluate metric {params.metric!r} returned no {missing}; it gave {sorted(result)} (set `keys`)"
            )
        scores = {k: float(result[k]) for k in keys}
        outcomes.append(Outcome(output, scores, None, str(reference)))
    return outcomes


def _specialise(check: CheckType[EvaluateParams], params: EvaluateParams, _dir: Path) -> Any:
    return replace(check, metrics=result_keys(params))


CHECK = CheckType(
    "evaluate",
    EvaluateParams,
    ("score",),
    run_evaluate,
    required_fields=lambda p: {p.references_field},
    default_range=None,  # any metric: judged from the scores seen
    specialise=_specialise,
)
