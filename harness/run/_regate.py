"""`harness gate RUN`: decide a stored run's gates again, under the suite file as it is now.

After a threshold changes (or a gate is added), the models need not run again: every case they
answered is in the store. The new verdicts are recorded as a NEW run whose `source_run` is the
original, which stays untouched (its verdicts were true under the suite it ran with). The new run
holds copies of the original's models, cases, metrics and loss curves, so `show`, `report`,
`compare`, `--baseline` and `last-pass` treat it like any other run, and its `suite_text` is the
suite that decided it.
"""

from __future__ import annotations

from dataclasses import replace

from harness.core.errors import HarnessError
from harness.evaluation import (
    ModelResult,
    RunResult,
    candidate_names,
    never_recorded,
    stored_result,
    unmeasured_gates,
)
from harness.run._runner import Gating, decide_candidate_gates, finish_run
from harness.store import Store, StoredRun
from harness.suite import LoadedSuite


def regate_run(
    store: Store, run_id: str, suite: LoadedSuite, gating: Gating | None = None
) -> RunResult:
    """Re-decide run `run_id`'s gates under `suite` and record the verdicts as a new run."""
    gating = gating or Gating()
    stored = store.load_run(run_id)
    if stored.status == "running":
        raise HarnessError(f"run {run_id} is still running; gate it once it has finished")
    recorded = stored_result(stored, store.cases_by_model(run_id))
    base = recorded.base
    new_id = store.begin_run(
        suite_name=suite.name,
        suite_path=str(suite.path),
        suite_text=suite.text,
        suite_hash=suite.hash,
        config={"regated_from": run_id, **gating.config()},
        source_run=run_id,
    )
    store.record_model_result(new_id, base.record, base.cases, base.metrics, [])
    candidates = []
    by_name = {c.record.name: c for c in recorded.candidates}
    for name in _candidate_names(stored, suite):
        candidate = by_name.get(name) or never_recorded(stored, name)
        candidates.append(_regated(store, new_id, suite, stored, candidate, base, gating))
    return finish_run(store, new_id, suite, base, candidates, gating, source_run=run_id)


def _candidate_names(stored: StoredRun, suite: LoadedSuite) -> list[str]:
    """The run's candidates, then those of the suite it never recorded (an interrupted run)."""
    recorded = [m.name for m in stored.models if m.role == "candidate"]
    expected = candidate_names(suite, list(suite.spec.candidates))
    return recorded + [name for name in expected if name not in recorded]


def _regated(
    store: Store,
    run_id: str,
    suite: LoadedSuite,
    stored: StoredRun,
    candidate: ModelResult,
    base: ModelResult,
    gating: Gating,
) -> ModelResult:
    """One candidate with new verdicts (a model that failed to run stays an error)."""
    name = candidate.record.name
    record, gates = candidate.record, []
    if record.status != "error" and base.record.status == "error":
        record = replace(
            record, status="error", error="the base model failed, so nothing could be compared"
        )
    elif record.status != "error":
        gates = decide_candidate_gates(suite, store, candidate, base, gating)
        if unmeasured := unmeasured_gates(gates):
            record = replace(record, status="error", error="not measured: " + "; ".join(unmeasured))
    result = ModelResult(record, candidate.metrics, gates, candidate.cases, gating.fail_on)
    curve = list(stored.loss_curves.get(name) or []) or None
    store.record_model_result(run_id, result.record, result.cases, result.metrics, gates, curve)
    return result
