"""Running a suite: evaluate the base, then each candidate, decide the gates, record everything.

Each model's results go to the store as soon as that model is done, and every generation batch
goes to the output cache as it finishes, so an interrupted run loses nothing it had finished and
the next run of the same suite redoes only what is missing.
"""

from __future__ import annotations

import functools
import gc
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from harness.checks import EvalContext, Outcome, Ratio, cases_of
from harness.core.errors import HarnessError
from harness.core.records import CaseResult, GateResult, MetricValue, ModelRecord
from harness.core.registry import did_you_mean
from harness.evaluation._comparability import (
    EVALUATION,
    evaluation_facts,
    incomparable,
    no_effect_warning,
)
from harness.evaluation._gates import (
    GATE_KINDS,
    GateInputs,
    MetricCases,
    PairedSamples,
    Verdict,
    decide_gates,
    gate_status,
    index_metrics,
    unmeasured_gates,
    verdict_of,
)
from harness.evaluation._stats import estimate
from harness.suite._load import LoadedSuite, PlannedCheck
from harness.training._schedule import Trainings
from harness.training._train import training_info

ALL_GATE_KINDS: frozenset[str] = frozenset(GATE_KINDS)


class EmptyCheck(RuntimeError):
    """A check ran and produced no case: the model's evaluation measured nothing there."""


class Reporter:
    """Where a run says what it is doing; the CLI gives a rich one, the API a silent one."""

    def stage(self, model: str, stage: str, total: int | None = None) -> None:
        """A model enters a stage (loading, evaluating); `total` is its number of cases."""

    def advance(self, model: str, completed: float) -> None:
        """`completed` cases of the current model's stage are done."""

    def training(self, model: str, step: int, total: int, loss: float | None) -> None:
        """A training step of a trained candidate."""

    def done(self, model: str, verdict: str) -> None:
        """The model is finished."""


@dataclass(frozen=True)
class ModelResult:
    record: ModelRecord
    metrics: list[MetricValue] = field(default_factory=list)
    gates: list[GateResult] = field(default_factory=list)
    cases: list[CaseResult] = field(default_factory=list, repr=False)
    # Gate kinds whose failure fails the build (--fail-on; with "inconclusive" under --strict);
    # failures of the others only warn.
    fail_on: frozenset[str] = ALL_GATE_KINDS

    @property
    def warnings(self) -> tuple[str, ...]:
        """What a reader must see beside this candidate's verdict (a training without effect,
        cases its baseline lacked), kept in its record; inconclusive gates are `inconclusive`."""
        return tuple(self.record.info.get("warnings") or ())

    @property
    def verdict(self) -> Verdict:
        return verdict_of(self.record, self.gates, self.fail_on)

    @property
    def failed(self) -> list[GateResult]:
        """Gates that fail the build."""
        return [g for g in self.gates if gate_status(g, self.fail_on) == "fail"]

    @property
    def inconclusive(self) -> list[GateResult]:
        """Gates that could not tell (a warning unless --strict)."""
        return [g for g in self.gates if gate_status(g, self.fail_on) == "inconclusive"]

    @property
    def warned(self) -> list[GateResult]:
        """Failed or inconclusive gates of kinds outside `fail_on`: warnings, not a regression."""
        return [g for g in self.gates if gate_status(g, self.fail_on) == "warn"]


@dataclass(frozen=True)
class RunResult:
    run_id: str
    suite: str
    base: ModelResult
    candidates: list[ModelResult]
    baseline: dict[str, Any] | None = None  # Baseline.describe() when gated against a stored run
    warnings: list[str] = field(default_factory=list)  # e.g. cases a baseline never scored
    source_run: str | None = None  # the stored run re-gated (`harness gate`)
    suite_path: str | None = None

    @property
    def exit_code(self) -> int:
        """3 when anything failed to run, else 1 when a gate failed, else 0 (SPEC.md); an
        inconclusive gate warns (exit 0) unless --strict made it fail."""
        verdicts = self._verdicts()
        if "error" in verdicts:
            return 3
        return 1 if "regressed" in verdicts else 0

    @property
    def status(self) -> str:
        """passed, inconclusive (exit 0, but some gate could not tell), regressed or error."""
        verdicts = self._verdicts()
        for status in ("error", "regressed", "inconclusive"):
            if status in verdicts:
                return status
        return "passed"

    def _verdicts(self) -> list[Verdict]:
        verdicts = [self.base.verdict if self.base.record.status == "error" else "passed"]
        return verdicts + [c.verdict for c in self.candidates]


def selected_candidates(suite: LoadedSuite, only: Sequence[str] | None) -> list[Any]:
    """The suite's candidates, or those named by --only (unknown names are a usage error)."""
    candidates = list(suite.spec.candidates)
    if not only:
        return candidates
    names = [c.name for c in candidates]
    for name in only:
        if name not in names:
            raise HarnessError(
                f'--only: no candidate "{name}"{did_you_mean(name, names)}; the suite has: {", ".join(names) or "none"}'
            )
    return [c for c in candidates if c.name in only]


@dataclass
class Gating:
    """How candidates are gated: which gate kinds fail the build, and against what.

    With a baseline, each candidate's forgetting and improve gates compare it with a stored
    model (see harness.evaluation._baseline) instead of the base evaluated in this run; threshold gates are
    absolute and unchanged.
    """

    fail_on: frozenset[str] = ALL_GATE_KINDS
    baseline: Any = None  # harness.evaluation._baseline.Baseline
    warnings: list[str] = field(default_factory=list)
    _references: dict[str, Any] = field(default_factory=dict)

    def reference(self, store: Any, suite: LoadedSuite, candidate: str) -> Any:
        """The baseline's stand-in for `candidate`, loaded once per stand-in model."""
        from harness.evaluation._baseline import load_reference, missing_warning

        name = self.baseline.stand_in(candidate)
        if name not in self._references:
            self._references[name] = load_reference(store, suite, self.baseline, candidate)
        found = self._references[name]
        warning = missing_warning(candidate, found)
        if warning and warning not in self.warnings:
            self.warnings.append(warning)
        return found

    def config(self) -> dict[str, Any]:
        baseline = self.baseline.describe() if self.baseline is not None else None
        return {"fail_on": sorted(self.fail_on), "baseline": baseline}


def run_suite(
    suite: LoadedSuite,
    store: Any,
    *,
    only: Sequence[str] | None = None,
    reporter: Reporter | None = None,
    config: dict[str, Any] | None = None,
    retrain: bool = False,
    gating: Gating | None = None,
) -> RunResult:
    """Evaluate the base and the selected candidates, gate them, and record the run in `store`."""
    reporter = reporter or Reporter()
    gating = gating or Gating()
    candidates = selected_candidates(suite, only)
    run_id = store.begin_run(
        suite_name=suite.name,
        suite_path=str(suite.path),
        suite_text=suite.text,
        suite_hash=suite.hash,
        config={"only": list(only or []), "models": suite.models, **gating.config()}
        | (config or {}),
    )
    base = _evaluate(suite, store, run_id, "base", "base", suite.models["base"], reporter)
    trainings = _trainings(suite, base, reporter, retrain)
    if base.record.status != "error":
        trainings.start([c.name for c in candidates if c.backend is not None])
    results: list[ModelResult] = []
    try:
        for candidate in candidates:
            results += _candidate(
                suite, store, run_id, candidate, base, reporter, trainings, gating
            )
    finally:
        trainings.close()
    result = RunResult(
        run_id,
        suite.name,
        base,
        results,
        baseline=gating.config()["baseline"],
        warnings=list(gating.warnings),
        suite_path=str(suite.path),
    )
    store.finish_run(run_id, status=result.status, exit_code=result.exit_code)
    return result


def decide_candidate_gates(
    suite: LoadedSuite, store: Any, candidate: ModelResult, base: ModelResult, gating: Gating
) -> list[GateResult]:
    """A candidate's gate verdicts against the base, or against its baseline stand-in."""
    reference_cases, reference_metrics, reference = base.cases, base.metrics, None
    if gating.baseline is not None:
        reference = gating.reference(store, suite, candidate.record.name)
        reference_cases, reference_metrics = reference.cases, reference.metrics
    inputs = GateInputs(
        candidate=index_metrics(candidate.metrics),
        reference=index_metrics(reference_metrics),
        lower_is_better=lower_is_better_metrics(suite.checks),
        cases=metric_cases(suite.checks, candidate.cases),
        paired=paired_samples(suite.checks, reference_cases, candidate.cases),
        seed=suite.spec.seed,
    )
    gates = decide_gates(list(suite.spec.capabilities), inputs, joint=suite.spec.joint_gates)
    if reference is None:
        return gates
    from harness.evaluation._baseline import annotate

    return annotate(gates, reference)


def _candidate(
    suite: LoadedSuite,
    store: Any,
    run_id: str,
    candidate: Any,
    base: ModelResult,
    reporter: Reporter,
    trainings: Trainings,
    gating: Gating,
) -> list[ModelResult]:
    """The candidate's results: one, or two when an adapter is also evaluated merged."""
    if base.record.status == "error":
        message = "the base model failed, so nothing could be compared"
        return [
            _failed(store, run_id, candidate.name, candidate.model or candidate.backend, message)
        ]
    if candidate.backend is None:
        return [
            _evaluated(
                suite,
                store,
                run_id,
                candidate.name,
                suite.models[candidate.name],
                base,
                reporter,
                gating,
            )
        ]
    try:
        trained = trainings.result(candidate.name)
    except Exception as exc:  # a crash, out of memory or a NaN loss: the others still run
        reporter.done(candidate.name, "error")
        return [
            _failed(
                store,
                run_id,
                candidate.name,
                f"backend:{candidate.backend}",
                f"training failed: {type(exc).__name__}: {exc}",
            )
        ]
    info = {"training": training_info(trained)}
    results = [
        _evaluated(
            suite,
            store,
            run_id,
            candidate.name,
            str(trained.model_dir),
            base,
            reporter,
            gating,
            info,
            trained.loss_curve,
        )
    ]
    if trained.merged_dir is not None:
        merged_name = f"{candidate.name}+merged"
        results.append(
            _evaluated(
                suite,
                store,
                run_id,
                merged_name,
                str(trained.merged_dir),
                base,
                reporter,
                gating,
                info,
            )
        )
        results = _with_merge_agreement(store, run_id, results)
    return results


def _failed(store: Any, run_id: str, name: str, reference: str, message: str) -> ModelResult:
    record = _error_record(name, "candidate", reference, message)
    store.record_model(run_id, record)
    return ModelResult(record)


def _trainings(
    suite: LoadedSuite, base: ModelResult, reporter: Reporter, retrain: bool
) -> Trainings:
    """Who trains the candidates, and where (harness.training._schedule)."""
    from harness.models.loading import base_directory
    from harness.training._train import train_candidate

    lock = threading.Lock()  # parallel trainings: resolve (maybe save) the base directory once
    resolve_base = functools.cache(lambda: base_directory(suite.models["base"]))

    def train(name: str, placement: Any) -> Any:
        with lock:
            base_dir = resolve_base()
        where = "" if placement is None else f" ({placement.describe()})"
        reporter.stage(name, "training" + where)
        progress = lambda p: reporter.training(name, p.step, p.total_steps, p.loss)  # noqa: E731
        return train_candidate(
            suite,
            name,
            base_dir,
            base.record.fingerprint or "",
            retrain=retrain,
            progress=progress,
            placement=placement,
        )

    return Trainings(suite, train, on_queued=lambda name: reporter.stage(name, "queued"))


def _evaluated(
    suite: LoadedSuite,
    store: Any,
    run_id: str,
    name: str,
    reference: str,
    base: ModelResult,
    reporter: Reporter,
    gating: Gating,
    extra_info: dict[str, Any] | None = None,
    loss_curve: list[tuple[int, float]] | None = None,
) -> ModelResult:
    """Evaluate a candidate, decide its gates and record it (one transaction).

    A candidate evaluated unlike its reference (another tokenizer, chat template, engine or
    generation settings), or with a gated metric left unmeasured, is a run error, not a verdict.
    """
    evaluated = _evaluate(suite, store, run_id, name, "candidate", reference, reporter, base)
    if evaluated.record.status == "error":
        return evaluated
    record = replace(evaluated.record, info=evaluated.record.info | (extra_info or {}))
    against, reference_info = _reference_of(suite, store, name, base, gating)
    gates: list[GateResult] = []
    if differences := incomparable(reference_info, record.info):
        record = _as_error(record, f"not comparable with {against}: " + "; ".join(differences))
    else:
        gates = decide_candidate_gates(suite, store, evaluated, base, gating)
        if unmeasured := unmeasured_gates(gates):
            record = _as_error(record, "not measured: " + "; ".join(unmeasured))
        warnings = _warnings(record, evaluated.cases, base)
        if warnings:
            record = replace(record, info=record.info | {"warnings": warnings})
    result = ModelResult(record, evaluated.metrics, gates, evaluated.cases, gating.fail_on)
    _record(store, run_id, result, loss_curve or None)
    reporter.done(name, result.verdict)
    return result


def _reference_of(
    suite: LoadedSuite, store: Any, name: str, base: ModelResult, gating: Gating
) -> tuple[str, dict[str, Any]]:
    """What the candidate's relative gates compare with: its name and its model info."""
    if gating.baseline is None:
        return "the base", base.record.info
    found = gating.reference(store, suite, name)
    return found.label, found.info


def _as_error(record: ModelRecord, message: str) -> ModelRecord:
    return replace(record, status="error", error=message)


def _warnings(record: ModelRecord, cases: Sequence[CaseResult], base: ModelResult) -> list[str]:
    """What to say about a candidate beside its gates."""
    warnings = []
    if record.fingerprint is not None and record.fingerprint == base.record.fingerprint:
        warnings.append("it has the same weights as the base (same fingerprint)")
    elif "training" in record.info and (no_effect := no_effect_warning(cases, base.cases)):
        warnings.append(no_effect)
    return warnings


def _with_merge_agreement(store: Any, run_id: str, results: list[ModelResult]) -> list[ModelResult]:
    """Whether the merged model answers the golden prompts as the adapter-on-base did."""
    adapter, merged = results
    if adapter.record.status == "error" or merged.record.status == "error":
        return results
    outputs = {(c.capability, c.check, c.case_id): c.output for c in adapter.cases}
    same = [
        outputs.get((c.capability, c.check, c.case_id)) == c.output
        for c in merged.cases
        if c.output
    ]
    agreement = {
        "cases": len(same),
        "agree": sum(same),
        "rate": sum(same) / len(same) if same else 1.0,
    }
    updated = []
    for result in results:
        record = replace(result.record, info=result.record.info | {"merge_agreement": agreement})
        store.record_model(run_id, record)
        updated.append(replace(result, record=record))
    return updated


def _record(
    store: Any, run_id: str, result: ModelResult, loss_curve: list[tuple[int, float]] | None = None
) -> None:
    """One transaction per model: its record, cases, metrics, gate verdicts and loss curve.

    Never fewer: a model's results are committed as soon as it is done, so a killed run keeps them.
    """
    store.record_model_result(
        run_id, result.record, result.cases, result.metrics, result.gates, loss_curve
    )


def _error_record(name: str, role: Any, reference: str, message: str) -> ModelRecord:
    return ModelRecord(name, role, reference, None, "error", message)


def _evaluate(
    suite: LoadedSuite,
    store: Any,
    run_id: str,
    name: str,
    role: Any,
    reference: str,
    reporter: Reporter,
    base: ModelResult | None = None,
) -> ModelResult:
    """Load and evaluate one model; any failure becomes an error record, never an exception.

    A base model is recorded here; a candidate once its gates are decided.
    """
    from harness.models.loading import open_model

    reporter.stage(name, "loading")
    started = time.perf_counter()
    try:
        lm = open_model(reference, trust_remote_code=suite.spec.trust_remote_code)
        progress = lambda done: reporter.advance(name, done)  # noqa: E731
        base_cases = base.cases if base is not None else ()
        evaluation = evaluate_model(lm, suite, store, progress, reporter, name, base_cases)
        info = evaluation.model_info | {"seconds": round(time.perf_counter() - started, 3)}
        record = ModelRecord(name, role, reference, lm.fingerprint, "ok", None, info)
    except Exception as exc:  # one model failing must not stop the others (exit 3 later)
        record = _error_record(name, role, reference, f"{type(exc).__name__}: {exc}")
        store.record_model(run_id, record)
        reporter.done(name, "error")
        return ModelResult(record)
    finally:
        lm = None  # type: ignore[assignment]  # drop the model before the next one loads
        _release_accelerator_memory()
    result = ModelResult(record, evaluation.metrics, [], evaluation.cases)
    if role == "base":
        _record(store, run_id, result)
        reporter.done(name, "evaluated")
    return result


def _release_accelerator_memory() -> None:
    """Give the GPU memory of the model just evaluated back before the next one loads."""
    import sys

    torch = sys.modules.get("torch")  # nothing to free when torch was never imported
    if torch is not None and torch.cuda.is_available():
        gc.collect()  # models hold reference cycles; on a GPU their memory must go now
        torch.cuda.empty_cache()


def _model_info(engine: Any, generation: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """What we know of the model; a fully cached evaluation never loaded it."""
    counts = {
        "requests_cached": engine.requests_cached,
        "requests_computed": engine.requests_computed,
    }
    generated_by = getattr(engine, "generation_engine", None)  # "transformers" and/or "vllm"
    if generated_by is not None:
        counts["generation_engine"] = generated_by
    counts[EVALUATION] = evaluation_facts(engine.tokenizer_identity, generation, generated_by)
    if not engine.loaded:
        return {"loaded": False, "parameters": engine.source.parameters} | counts
    first = next(engine.model.parameters())
    return counts | {
        "loaded": True,
        "parameters": sum(p.numel() for p in engine.model.parameters()),
        "device": str(first.device),
        "dtype": str(first.dtype).removeprefix("torch."),
    }


@dataclass(frozen=True)
class Evaluation:
    cases: list[CaseResult]
    metrics: list[MetricValue]
    model_info: dict[str, Any]  # parameters, device, dtype, requests served from the cache


def evaluate_model(
    lm: Any,
    suite: LoadedSuite,
    cache: Any,
    on_progress: Callable[[float], None] | None = None,
    reporter: Reporter | None = None,
    name: str = "",
    base_cases: Sequence[CaseResult] = (),
) -> Evaluation:
    """Run every check of the suite on one model (a LazyModel loads only on a cache miss).

    `base_cases`: the base's results, which checks comparing against the base (pairwise judges)
    receive as `EvalContext.base_outputs`.
    """
    from harness.generation._engine import Engine

    total = sum(len(p.cases) for p in suite.checks)
    if reporter:
        reporter.stage(name, "evaluating", total)
    engine = Engine(lm, cache, batch_size=suite.spec.generation.batch_size)
    cases: list[CaseResult] = []
    outcomes: dict[int, list[Outcome]] = {}
    generation: dict[str, dict[str, Any]] = {}
    before = 0
    for index, planned in enumerate(suite.checks):
        engine.progress = _scaled(on_progress, before, len(planned.cases))
        settings = generation_settings(suite.spec.generation, planned.spec.generation)
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
    on_progress: Callable[[float], None] | None, before: int, size: int
) -> Callable[[int, int], None] | None:
    if on_progress is None:
        return None
    return lambda done, total: on_progress(before + size * done / max(total, 1))


def generation_settings(defaults: Any, override: Any) -> Any:
    """The suite's generation block with a check's overrides applied."""
    from harness.generation._engine import GenerationSettings

    values = defaults.model_dump()
    if override is not None:
        values |= {k: v for k, v in override.model_dump().items() if v is not None}
    return GenerationSettings(
        max_new_tokens=values["max_new_tokens"],
        stop=tuple(values["stop"]),
        chat_template=values["chat_template"],
        system_prompt=values["system_prompt"],
        engine=values["engine"],
    )


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
    metrics = []
    for (capability, metric), items in pooled.items():
        value = estimate(items, ratios[(capability, metric)], seed=seed)
        metrics.append(
            MetricValue(capability, metric, value.value, value.ci_low, value.ci_high, value.n)
        )
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
    return {f"{p.label}.{m}" for p in checks for m in p.check.lower_is_better}
