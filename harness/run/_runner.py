"""Running a suite: evaluate the base, then each candidate, decide the gates, record everything.

Each model's results go to the store as soon as that model is done, and every generation batch
goes to the output cache as it finishes, so an interrupted run loses nothing it had finished and
the next run of the same suite redoes only what is missing.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from harness.core.errors import HarnessError
from harness.core.progress import Reporter
from harness.core.records import CaseResult, GateResult, ModelRecord
from harness.core.registry import did_you_mean
from harness.evaluation import (
    ALL_GATE_KINDS,
    Baseline,
    EvidenceCache,
    GateInputs,
    ModelResult,
    Reference,
    RunResult,
    annotate,
    decide_gates,
    evaluate_model,
    evidence_scope,
    incomparable,
    index_metrics,
    load_reference,
    lower_is_better_metrics,
    metric_cases,
    missing_warning,
    no_effect_warning,
    paired_samples,
    unmeasured_gates,
)
from harness.generation import output_scope
from harness.models.loading import base_directory, open_model, remembered_fingerprint
from harness.run._checkpoints import checkpoint_judge
from harness.store import Store
from harness.suite import LoadedSuite
from harness.training import (
    Checkpoint,
    CheckpointPoint,
    Judge,
    TrainedModel,
    Trainings,
    merge_candidate,
    train_candidate,
    training_info,
)


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
    baseline: Baseline | None = None
    warnings: list[str] = field(default_factory=list)
    _references: dict[str, Reference] = field(default_factory=dict)

    def reference(self, store: Store, suite: LoadedSuite, candidate: str) -> Reference:
        """The baseline's stand-in for `candidate`, loaded once per stand-in model."""
        if self.baseline is None:
            raise ValueError("no baseline to take a reference from")
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


@dataclass(frozen=True)
class _Run:
    """The run in progress: what each of its steps needs, passed as one value."""

    suite: LoadedSuite
    store: Store
    run_id: str
    reporter: Reporter
    gating: Gating
    # One evaluation at a time: a child's checkpoints are evaluated from its training thread
    # while this process may be evaluating a candidate.
    evaluating: threading.Lock = field(default_factory=threading.Lock)
    retrain: bool = False  # --retrain: train (and merge) again, replacing cached artifacts
    _base_lock: threading.Lock = field(default_factory=threading.Lock)
    _base_dir: list[Path] = field(default_factory=list)

    def base_dir(self) -> Path:
        """The base as a local directory, resolved (maybe saved) once, also from the threads
        of parallel trainings."""
        with self._base_lock:
            if not self._base_dir:
                self._base_dir.append(base_directory(self.suite.models["base"]))
            return self._base_dir[0]


def run_suite(
    suite: LoadedSuite,
    store: Store,
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
    cluster = _join_cluster(suite)  # before anything is recorded: an unreachable one is no run
    store.read_ahead(_cached_scopes(suite, candidates))
    run_id = store.begin_run(
        suite_name=suite.name,
        suite_path=str(suite.path),
        suite_text=suite.text,
        suite_hash=suite.hash,
        config={
            "only": list(only or []),
            "models": suite.models,
            # runtime_env stays out: its env_vars may hold secrets
            "execution": suite.spec.execution.model_dump(mode="json", exclude={"runtime_env"}),
            **gating.config(),
        }
        | (config or {}),
    )
    if cluster is not None:
        store = _serialized(store)  # the workers' outputs are written from another thread
    run = _Run(suite, store, run_id, reporter, gating, retrain=retrain)
    engine = _engine(run, cluster)
    results: list[ModelResult] = []
    try:
        base = engine.evaluate_base()
        if base.record.status != "error":
            engine.start(base, candidates)
        for candidate in candidates:
            results += _candidate(run, candidate, base, engine)
    finally:
        engine.close()
    return finish_run(store, run_id, suite, base, results, gating)


class Engine(Protocol):
    """Where the run's models train and evaluate: `execution: {engine: local | ray}`. The gates
    are decided and the store written here, in the run's process, whatever the engine."""

    def evaluate_base(self) -> ModelResult: ...

    def start(self, base: ModelResult, candidates: Sequence[Any]) -> None:
        """Begin what can begin now (a cluster starts every model at once)."""

    def trained(self, name: str, *, here: bool = False) -> TrainedModel:
        """Candidate `name`'s trained model (waiting for it); its training's error otherwise.
        `here`: its files in this process's $HARNESS_HOME (a merge reads them)."""

    def evaluated(self, name: str) -> ModelResult | None:
        """Model `name`'s evaluation when the engine made it (where the model is); None: the
        run evaluates it here."""

    def close(self) -> None: ...


class LocalEngine:
    """Everything in the run's process, one model after another (training under `accelerate:`
    in a child launch)."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.trainings: Trainings | None = None

    def evaluate_base(self) -> ModelResult:
        return _evaluate(self.run, "base", "base", self.run.suite.models["base"])

    def start(self, base: ModelResult, candidates: Sequence[Any]) -> None:
        self.trainings = _trainings(self.run, base)

    def trained(self, name: str, *, here: bool = False) -> TrainedModel:
        if self.trainings is None:
            raise HarnessError("nothing trains before the base is evaluated")
        return self.trainings.result(name)  # type: ignore[no-any-return]

    def evaluated(self, name: str) -> ModelResult | None:
        return None

    def close(self) -> None:
        pass


def _join_cluster(suite: LoadedSuite) -> Any:
    """The Ray cluster of `engine: ray` (joined, or started on this machine); None: local."""
    if suite.spec.execution.engine != "ray":
        return None
    from harness.run._ray import connect  # deferred: imports ray, only for engine: ray

    return connect(suite.spec.execution)


def _serialized(store: Store) -> Store:
    from harness.run._ray import SerializedStore  # deferred: see _join_cluster

    return SerializedStore(store)  # type: ignore[return-value]


def _engine(run: _Run, cluster: Any) -> Engine:
    if cluster is not None:
        from harness.run._ray import RayEngine  # deferred: see _join_cluster

        return RayEngine(run, cluster)
    return LocalEngine(run)


def finish_run(
    store: Store,
    run_id: str,
    suite: LoadedSuite,
    base: ModelResult,
    candidates: list[ModelResult],
    gating: Gating,
    source_run: str | None = None,
) -> RunResult:
    """The run's results, with its status and exit code recorded in the store."""
    result = RunResult(
        run_id,
        suite.name,
        base,
        candidates,
        baseline=gating.config()["baseline"],
        warnings=list(gating.warnings),
        source_run=source_run,
        suite_path=str(suite.path),
    )
    store.finish_run(run_id, status=result.status, exit_code=result.exit_code)
    return result


def decide_candidate_gates(
    suite: LoadedSuite, store: Store, candidate: ModelResult, base: ModelResult, gating: Gating
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
        evidence_cache=_evidence_cache(store, candidate),
    )
    gates = decide_gates(list(suite.spec.capabilities), inputs, joint=suite.spec.joint_gates)
    return gates if reference is None else annotate(gates, reference)


def _cached_scopes(suite: LoadedSuite, candidates: Sequence[Any]) -> list[list[str]]:
    """What each model will read from the store, in evaluation order, for the models whose
    fingerprint is known before loading (trained candidates' are not)."""
    groups = []
    for name in ["base", *(c.name for c in candidates if c.model is not None)]:
        fingerprint = remembered_fingerprint(suite.models[name], quantize=_quantize(suite, name))
        if fingerprint is not None:
            scopes = [output_scope(fingerprint)]
            groups.append(scopes if name == "base" else [*scopes, evidence_scope(fingerprint)])
    return groups


def _quantize(suite: LoadedSuite, name: str) -> str | None:
    """How candidate `name` is quantized as it loads (`quantize:`), if it is."""
    return next((c.quantize for c in suite.spec.candidates if c.name == name), None)


def _evidence_cache(store: Store, candidate: ModelResult) -> EvidenceCache | None:
    """The store's evidence for this candidate's weights (the key holds every case's numbers,
    so the reference it was compared with is part of it)."""
    fingerprint = candidate.record.fingerprint
    if fingerprint is None or not hasattr(store, "get_scope"):
        return None
    return EvidenceCache(store, evidence_scope(fingerprint))


def _candidate(run: _Run, candidate: Any, base: ModelResult, engine: Engine) -> list[ModelResult]:
    """The candidate's results: one, or two when an adapter is also evaluated merged; on the
    capabilities it names (`capabilities:`), or all."""
    run = replace(run, suite=run.suite.only(candidate.capabilities))
    if base.record.status == "error":
        message = "the base model failed, so nothing could be compared"
        return [_failed(run, candidate.name, candidate.model or candidate.backend, message)]
    if candidate.model is not None:
        reference = run.suite.models[candidate.name]
        return [
            _evaluated(
                run, candidate.name, reference, base, evaluated=engine.evaluated(candidate.name)
            )
        ]
    try:
        trained = _trained(run, candidate, engine)
    except Exception as exc:  # a crash, out of memory or a NaN loss: the others still run
        run.reporter.done(candidate.name, "error")
        doing = "merging" if candidate.merge_of is not None else "training"
        return [
            _failed(
                run,
                candidate.name,
                f"backend:{candidate.backend or 'merge'}",
                f"{doing} failed: {type(exc).__name__}: {exc}",
            )
        ]
    info = {"training": training_info(trained)}
    model_dir, curve = str(trained.model_dir), trained.loss_curve
    evaluated = engine.evaluated(candidate.name)
    results = [_evaluated(run, candidate.name, model_dir, base, info, curve, evaluated)]
    if trained.merged_dir is not None:
        merged_name = f"{candidate.name}+merged"
        evaluated = engine.evaluated(merged_name)
        results.append(
            _evaluated(run, merged_name, str(trained.merged_dir), base, info, None, evaluated)
        )
        results = _with_merge_agreement(run, results)
    return results


def _trained(run: _Run, candidate: Any, engine: Engine) -> TrainedModel:
    """A trained candidate's model, or a merged one's, built from its trained sources."""
    if candidate.merge_of is None:
        return engine.trained(candidate.name)
    sources = {}
    for name in candidate.merge_of.candidates:
        try:
            sources[name] = engine.trained(name, here=True)
        except Exception as exc:
            raise HarnessError(f"{name} failed to train: {type(exc).__name__}: {exc}") from exc
    run.reporter.stage(candidate.name, "merging " + ", ".join(candidate.merge_of.candidates))
    seed = run.suite.spec.seed
    return merge_candidate(candidate.merge_of, run.base_dir(), sources, seed, retrain=run.retrain)


def _failed(run: _Run, name: str, reference: str, message: str) -> ModelResult:
    record = _error_record(name, "candidate", reference, message)
    run.store.record_model(run.run_id, record)
    return ModelResult(record)


def _trainings(run: _Run, base: ModelResult) -> Trainings:
    """Who trains the candidates, and where (harness.training._schedule)."""
    suite, reporter = run.suite, run.reporter

    def train(name: str, placement: Any, dependencies: dict[str, Any]) -> Any:
        base_dir = run.base_dir()
        where = "" if placement is None else f" ({placement.describe()})"
        reporter.stage(name, "training" + where)

        def progress(p: Any) -> None:
            reporter.training(name, p.step, p.total_steps, p.loss, p.phase)

        return train_candidate(
            suite,
            name,
            base_dir,
            base.record.fingerprint or "",
            retrain=run.retrain,
            progress=progress,
            placement=placement,
            judge=_judge(run, name, base),
            dependencies=dependencies,
        )

    return Trainings(suite, train)


def _judge(run: _Run, name: str, base: ModelResult) -> Judge | None:
    """Who evaluates candidate `name`'s checkpoints, when it has `checkpoints:`."""
    if run.suite.trainings[name].checkpoints is None:
        return None
    gating = Gating(fail_on=run.gating.fail_on)  # checkpoints are gated against this run's base

    def gate(view: LoadedSuite, evaluated: ModelResult) -> list[GateResult]:
        return decide_candidate_gates(view, run.store, evaluated, base, gating)

    judge = checkpoint_judge(run.suite, run.store, run.reporter, name, base, gate)

    def one_at_a_time(checkpoint: Checkpoint) -> CheckpointPoint:
        with run.evaluating:
            return judge(checkpoint)

    return one_at_a_time


def _evaluated(
    run: _Run,
    name: str,
    reference: str,
    base: ModelResult,
    extra_info: dict[str, Any] | None = None,
    loss_curve: list[tuple[int, float]] | None = None,
    evaluated: ModelResult | None = None,
) -> ModelResult:
    """Evaluate a candidate (unless the engine did: `evaluated`), decide its gates and record it
    (one transaction).

    A candidate evaluated unlike its reference (another tokenizer, chat template, engine or
    generation settings), or with a gated metric left unmeasured, is a run error, not a verdict.
    """
    if evaluated is None:
        evaluated = _evaluate(run, name, "candidate", reference, base)
    if evaluated.record.status == "error":
        return evaluated
    record = replace(evaluated.record, info=evaluated.record.info | (extra_info or {}))
    against, reference_info = _reference_of(run, name, base)
    gates: list[GateResult] = []
    if differences := incomparable(reference_info, record.info):
        record = _as_error(record, f"not comparable with {against}: " + "; ".join(differences))
    else:
        gates = decide_candidate_gates(run.suite, run.store, evaluated, base, run.gating)
        if unmeasured := unmeasured_gates(gates):
            record = _as_error(record, "not measured: " + "; ".join(unmeasured))
        warnings = _warnings(record, evaluated.cases, base)
        if warnings:
            record = replace(record, info=record.info | {"warnings": warnings})
    result = ModelResult(record, evaluated.metrics, gates, evaluated.cases, run.gating.fail_on)
    _record(run, result, loss_curve or None)
    run.reporter.done(name, result.verdict)
    return result


def _reference_of(run: _Run, name: str, base: ModelResult) -> tuple[str, dict[str, Any]]:
    """What the candidate's relative gates compare with: its name and its model info."""
    if run.gating.baseline is None:
        return "the base", base.record.info
    found = run.gating.reference(run.store, run.suite, name)
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


def _with_merge_agreement(run: _Run, results: list[ModelResult]) -> list[ModelResult]:
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
        run.store.record_model(run.run_id, record)
        updated.append(replace(result, record=record))
    return updated


def _record(
    run: _Run, result: ModelResult, loss_curve: list[tuple[int, float]] | None = None
) -> None:
    """One transaction per model: its record, cases, metrics, gate verdicts and loss curve.

    Never fewer: a model's results are committed as soon as it is done, so a killed run keeps them.
    """
    run.store.record_model_result(
        run.run_id, result.record, result.cases, result.metrics, result.gates, loss_curve
    )


def _error_record(name: str, role: Any, reference: str, message: str) -> ModelRecord:
    return ModelRecord(name, role, reference, None, "error", message)


def _evaluate(
    run: _Run, name: str, role: Any, reference: str, base: ModelResult | None = None
) -> ModelResult:
    """Load and evaluate one model; any failure becomes an error record, never an exception.

    A base model is recorded here; a candidate once its gates are decided.
    """
    with run.evaluating:
        return _evaluate_now(run, name, role, reference, base)


def _evaluate_now(
    run: _Run, name: str, role: Any, reference: str, base: ModelResult | None
) -> ModelResult:
    suite, store, reporter = run.suite, run.store, run.reporter
    reporter.stage(name, "loading")
    started = time.perf_counter()
    try:
        quantize = _quantize(suite, name)
        lm = open_model(
            reference, trust_remote_code=suite.spec.trust_remote_code, quantize=quantize
        )
        if role == "candidate":  # its outputs and its gates' evidence: one read, not two
            store.prefetch_scopes([output_scope(lm.fingerprint), evidence_scope(lm.fingerprint)])

        def progress(done: float, batches: int, tokens: int) -> None:
            reporter.advance(name, done, batches=batches, tokens=tokens)

        base_cases = base.cases if base is not None else ()
        evaluation = evaluate_model(lm, suite, store, progress, reporter, name, base_cases)
        info = evaluation.model_info | {"seconds": round(time.perf_counter() - started, 3)}
        if quantize is not None:
            info["quantized"] = quantize
        record = ModelRecord(name, role, reference, lm.fingerprint, "ok", None, info)
    except Exception as exc:  # one model failing must not stop the others (exit 3 later)
        record = _error_record(name, role, reference, f"{type(exc).__name__}: {exc}")
        store.record_model(run.run_id, record)
        reporter.done(name, "error")
        return ModelResult(record)
    finally:
        lm = None  # type: ignore[assignment]  # drop the model before the next one loads
        _release_accelerator_memory()
    result = ModelResult(record, evaluation.metrics, [], evaluation.cases)
    if role == "base":
        _record(run, result)
        reporter.done(name, "evaluated")
    return result


def _release_accelerator_memory() -> None:
    """Give the GPU memory of the model just evaluated back before the next one loads."""
    import sys

    torch = sys.modules.get("torch")  # nothing to free when torch was never imported
    if torch is not None and torch.cuda.is_available():
        gc.collect()  # models hold reference cycles; on a GPU their memory must go now
        torch.cuda.empty_cache()
