"""Evaluating one model on a suite: every check's cases, their metrics with intervals, and the
pairing of a candidate's cases with its reference's for the gates."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.checks import EvalContext, GenerationOverride, cases_of
from harness.core.progress import Reporter
from harness.core.records import CaseResult, MetricValue
from harness.core.scores import Outcome, Ratio
from harness.evaluation._comparability import EVALUATION, evaluation_facts
from harness.evaluation._gates import MetricCases, PairedSamples
from harness.evaluation._stats import estimate
from harness.generation import Engine, GenerationSettings, OutputCache
from harness.models import LazyModel, LoadedModel
from harness.suite import GenerationConfig, LoadedSuite, PlannedCheck


class EmptyCheck(RuntimeError):
    """A check ran and produced no case: the model's evaluation measured nothing there."""


def _model_info(engine: Engine, generation: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """What we know of the model; a fully cached evaluation never loaded it."""
    counts: dict[str, Any] = {
        "requests_cached": engine.requests_cached,
        "requests_computed": engine.requests_computed,
    }
    generated_by = getattr(engine, "generation_engine", None)  # "transformers" and/or "vllm"
    if generated_by is not None:
        counts["generation_engine"] = generated_by
    counts[EVALUATION] = evaluation_facts(engine.tokenizer_identity, generation, generated_by)
    if isinstance(engine.source, LazyModel) and not engine.loaded:
        return {"loaded": False, "parameters": engine.source.parameters} | counts
    first = next(engine.model.parameters())
    footprint = getattr(engine.model, "get_memory_footprint", None)
    return counts | {
        "loaded": True,
        "parameters": _parameters(engine.model),
        # bytes of weights in memory: what quantizing (int8, nf4) saves
        **({"weights_bytes": int(footprint())} if callable(footprint) else {}),
        "device": str(first.device),
        "dtype": str(first.dtype).removeprefix("torch."),
    }


def _parameters(model: Any) -> int:
    """Parameters as the checkpoint counts them (transformers unpacks 4-bit weights' count)."""
    counter = getattr(model, "num_parameters", None)
    return int(counter()) if callable(counter) else sum(p.numel() for p in model.parameters())


@dataclass(frozen=True)
class Evaluation:
    cases: list[CaseResult]
    metrics: list[MetricValue]
    model_info: dict[str, Any]  # parameters, device, dtype, requests served from the cache


def evaluate_model(
    lm: LoadedModel | LazyModel,
    suite: LoadedSuite,
    cache: OutputCache | None,
    on_progress: Callable[[float, int, int], None] | None = None,
    reporter: Reporter | None = None,
    name: str = "",
    base_cases: Sequence[CaseResult] = (),
) -> Evaluation:
    """Run every check of the suite on one model (a LazyModel loads only on a cache miss).

    `base_cases`: the base's results, which checks comparing against the base (pairwise judges)
    receive as `EvalContext.base_outputs`.
    """

    total = sum(len(p.cases) for p in suite.checks)
    if reporter:
        reporter.stage(name, "evaluating", total)
    engine = Engine(lm, cache, batch_size=suite.spec.generation.batch_size)
    cases: list[CaseResult] = []
    outcomes: dict[int, list[Outcome]] = {}
    generation: dict[str, dict[str, Any]] = {}
    before = 0
    for index, planned in enumerate(suite.checks):
        engine.progress = _scaled(on_progress, engine, before, len(planned.cases))
        settings = generation_settings(suite.spec.generation, planned.spec.generation)
        if not planned.check.uses_chat_template:
            settings = settings.merge({"chat_template": False})
        generation[f"{planned.capability} · {planned.label}"] = settings.as_record()
        ctx = EvalContext(
            engine,
            settings,
            base_outputs=_outputs_of(base_cases, planned),
            seed=suite.spec.seed,
        )
        outcomes[index] = planned.check.run(planned.cases, planned.spec, ctx)
        if not outcomes[index]:  # nothing measured is never a score (an lm_eval task, say)
            raise EmptyCheck(f"{planned.capability} · {planned.label}: the check produced no cases")
        cases += _case_results(planned, outcomes[index])
        before += len(planned.cases)
    metrics = aggregate_metrics(suite.checks, outcomes, seed=suite.spec.seed)
    return Evaluation(cases, metrics, _model_info(engine, generation))


def _outputs_of(cases: Sequence[CaseResult], planned: PlannedCheck) -> dict[str, str]:
    return {
        c.case_id: c.output
        for c in cases
        if (c.capability, c.check) == (planned.capability, planned.label)
    }


def _scaled(
    on_progress: Callable[[float, int, int], None] | None, engine: Engine, before: int, size: int
) -> Callable[[int, int], None] | None:
    """The engine's (done, total) requests of one check as (cases of the whole suite done,
    batches computed, tokens generated)."""
    if on_progress is None:
        return None
    return lambda done, total: on_progress(
        before + size * done / max(total, 1), engine.batches_computed, engine.tokens_generated
    )


def generation_settings(
    defaults: GenerationConfig, override: GenerationOverride | None
) -> GenerationSettings:
    """The suite's generation block with a check's overrides applied."""
    merged = GenerationSettings().merge(defaults.model_dump())
    return merged.merge(override.model_dump() if override is not None else None)


def _case_results(planned: PlannedCheck, outcomes: list[Outcome]) -> list[CaseResult]:
    return [
        CaseResult(
            capability=planned.capability,
            check=planned.label,
            case_id=case.id,
            prompt=case.prompt,
            expected=outcome.expected,
            output=outcome.output,
            scores=outcome.scores,
            passed=outcome.passed,
            details=outcome.details,
        )
        # checks that make their cases at run time (lm_eval) name them in their outcomes
        for case, outcome in zip(cases_of(planned.cases, outcomes), outcomes, strict=True)
    ]


def aggregate_metrics(
    checks: Sequence[PlannedCheck], outcomes: dict[int, list[Outcome]], *, seed: int
) -> list[MetricValue]:
    """Per capability and `<label>.<metric>`: cases of checks sharing a label are pooled."""
    pooled: dict[tuple[str, str], list[Outcome]] = defaultdict(list)
    ratios: dict[tuple[str, str], Ratio] = {}
    for index, planned in enumerate(checks):
        for metric in planned.check.metrics_for(planned.spec):
            key = (planned.capability, f"{planned.label}.{metric}")
            pooled[key] += outcomes[index]
            ratios.setdefault(key, planned.check.aggregator(metric))
    lower = lower_is_better_metrics(checks)
    metrics = []
    for (capability, metric), items in pooled.items():
        value = estimate(items, ratios[(capability, metric)], seed=seed)
        interval = (value.value, value.ci_low, value.ci_high, value.n)
        metrics.append(MetricValue(capability, metric, *interval, metric in lower))
    return metrics


def paired_samples(
    checks: Sequence[PlannedCheck], base: Sequence[CaseResult], candidate: Sequence[CaseResult]
) -> dict[tuple[str, str], PairedSamples]:
    """Per capability and metric, the cases both models answered, paired by case."""
    base_by_case = {(c.capability, c.check, c.case_id): c for c in base}
    grouped: dict[tuple[str, str], PairedSamples] = {}
    for planned in checks:
        pairs = [
            (base_by_case[case_key], case)
            for case in candidate
            if (case_key := (case.capability, case.check, case.case_id)) in base_by_case
            and (case.capability, case.check) == (planned.capability, planned.label)
        ]
        for metric in planned.check.metrics_for(planned.spec):
            key = (planned.capability, f"{planned.label}.{metric}")
            if key not in grouped:  # checks sharing a label pool their cases, counted once
                grouped[key] = PairedSamples(
                    [c.case_id for _, c in pairs],
                    [_outcome(b) for b, _ in pairs],
                    [_outcome(c) for _, c in pairs],
                    planned.check.aggregator(metric),
                    planned.check.value_range(metric),
                )
    return grouped


def metric_cases(
    checks: Sequence[PlannedCheck], cases: Sequence[CaseResult]
) -> dict[tuple[str, str], MetricCases]:
    """Per capability and metric, one model's cases (threshold gates test them)."""
    grouped: dict[tuple[str, str], MetricCases] = {}
    for planned in checks:
        mine = [c for c in cases if (c.capability, c.check) == (planned.capability, planned.label)]
        for metric in planned.check.metrics_for(planned.spec):
            key = (planned.capability, f"{planned.label}.{metric}")
            if key not in grouped:  # checks sharing a label pool their cases, counted once
                grouped[key] = MetricCases(
                    [c.case_id for c in mine],
                    [_outcome(c) for c in mine],
                    planned.check.aggregator(metric),
                    planned.check.value_range(metric),
                )
    return grouped


def _outcome(case: CaseResult) -> Outcome:
    return Outcome(case.output, case.scores, case.passed, case.expected, case.details)


def lower_is_better_metrics(checks: Sequence[PlannedCheck]) -> set[str]:
    """Metric names (`<label>.<metric>`) whose check says lower is better."""
    return {f"{p.label}.{m}" for p in checks for m in p.check.lower_is_better}
