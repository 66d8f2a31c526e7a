"""Evaluating a trained candidate at its checkpoints: the suite's checks (or the capabilities its
`checkpoints:` names) on the model in memory, gated against the base like the final candidate.

A checkpoint is fingerprinted by its weights (`fingerprint_model`), so its outputs are cached
like any model's: the selected checkpoint, saved and loaded again as the candidate, finds its
outputs already computed, and a rerun that reuses the artifact evaluates nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from harness.core.progress import Reporter
from harness.core.records import GateResult, MetricValue, ModelRecord
from harness.core.scores import finite as _finite
from harness.evaluation import ModelResult, evaluate_model, lower_is_better_metrics
from harness.models import LoadedModel
from harness.models.fingerprint import fingerprint_model
from harness.models.tasks import CAUSAL_LM, CLASSIFICATION
from harness.store import Store
from harness.suite import LoadedSuite, checkpoint_capabilities
from harness.training import Checkpoint, CheckpointPoint, Judge

# (the suite the checkpoint was evaluated on, its results) -> its gates against the base
Gate = Callable[[LoadedSuite, ModelResult], list[GateResult]]


def checkpoint_suite(suite: LoadedSuite, name: str) -> LoadedSuite:
    """The suite as checkpoints of candidate `name` see it: only the capabilities they evaluate."""
    settings = suite.trainings[name].checkpoints
    if settings is None or settings.capabilities is None:
        return suite
    return suite.only([c.name for c in checkpoint_capabilities(suite.spec, settings)])


def checkpoint_judge(
    suite: LoadedSuite, store: Store, reporter: Reporter, name: str, base: ModelResult, gate: Gate
) -> Judge:
    """Evaluates and gates one checkpoint of candidate `name` (in this process)."""
    view = checkpoint_suite(suite, name)
    lower = lower_is_better_metrics(view.checks)
    total = sum(len(p.cases) for p in view.checks)

    def judge(checkpoint: Checkpoint) -> CheckpointPoint:
        started = time.perf_counter()
        label = f"{name}@{checkpoint.step}"
        reporter.stage(name, f"checkpoint {checkpoint.step}", total)
        model = LoadedModel(
            label,
            checkpoint.model,
            checkpoint.tokenizer,
            fingerprint_model(checkpoint.model),
            task=_task(checkpoint.model),
        )

        def progress(done: float, batches: int, tokens: int) -> None:
            reporter.advance(name, done, batches=batches, tokens=tokens)

        evaluation = evaluate_model(model, view, store, progress, None, name, base.cases)
        record = ModelRecord(label, "candidate", label, model.fingerprint, "ok")
        gates = gate(view, ModelResult(record, evaluation.metrics, [], evaluation.cases))
        point = CheckpointPoint(
            checkpoint.step,
            model.fingerprint,
            [_metric(m) for m in evaluation.metrics],
            [_gate(g) for g in gates],
            _score(gates, lower),
            round(time.perf_counter() - started, 3),
        )
        reporter.note(name, describe(point))
        return point

    return judge


def describe(point: CheckpointPoint) -> str:
    """One line per checkpoint, e.g. `step 50: passed (new_facts improve pass, ...)`."""
    gates = ", ".join(f"{g['capability']} {g['kind']} {g['outcome']}" for g in point.gates)
    verdict = "passed" if point.passed else "forgot" if point.forgot else "not passing"
    return f"checkpoint step {point.step}: {verdict}" + (f" ({gates})" if gates else "")


def _task(model: Any) -> str:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return CLASSIFICATION if type(base).__name__.endswith("SequenceClassification") else CAUSAL_LM


def _metric(metric: MetricValue) -> dict[str, Any]:
    return {
        "capability": metric.capability,
        "metric": metric.metric,
        "value": _finite(metric.value),
        "ci_low": _finite(metric.ci_low),
        "ci_high": _finite(metric.ci_high),
        "n": metric.n,
    }


def _gate(gate: GateResult) -> dict[str, Any]:
    return {
        "capability": gate.capability,
        "kind": gate.kind,
        "metric": gate.metric,
        "value": _finite(gate.value),
        "base_value": _finite(gate.base_value),
        "limit": gate.limit,
        "outcome": gate.outcome,
    }


def _score(gates: list[GateResult], lower: set[str]) -> float | None:
    """The first improve gate's value, higher is better (lower-is-better metrics negated)."""
    for gate in gates:
        if gate.kind == "improve" and gate.value is not None and math.isfinite(gate.value):
            return -gate.value if gate.metric in lower else gate.value
    return None


__all__ = ["checkpoint_judge", "checkpoint_suite", "describe"]
