"""Baselines: a stored run's model standing in for the base on a candidate's relative gates.

`harness run SUITE --baseline REF` gates each candidate's forgetting and improve gates against a
model of a stored run instead of the base evaluated now. REF is a run id (or unique prefix, or
`last`), `tag:NAME` (see `harness tag`), or `last-pass` (the newest run of this suite whose gates
all held).

The rule for which stored model stands in for a candidate: the baseline run's model **of the same
name** (so "prod-model" of this run is compared with "prod-model" of the baseline), unless
`--baseline-model NAME` picks one model of the baseline run for every candidate. A candidate with
no stand-in is a usage error before anything runs.

The comparison uses the baseline's stored cases, paired by (capability, check, case id), so nothing
is evaluated again. Only when the current suite has cases the baseline never scored is its model
evaluated from its stored reference, through the output cache (so only the new cases compute), and
only if its weights still have the stored fingerprint. Otherwise the missing cases are reported in
the gate details (`baseline_missing`) and as a warning, and the gate decides on the paired rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from harness.core.errors import HarnessError
from harness.core.records import CaseResult, GateResult, MetricValue
from harness.core.registry import did_you_mean
from harness.core.scores import Outcome
from harness.evaluation._evaluate import aggregate_metrics, evaluate_model
from harness.models.loading import open_model
from harness.store import Store
from harness.suite import LoadedSuite, PlannedCheck

LAST_PASS = "last-pass"
CaseKey = tuple[str, str, str]  # (capability, check label, case id)


@dataclass(frozen=True)
class Baseline:
    """A stored run whose models stand in for the base, resolved before anything runs."""

    ref: str  # as given: a run id, tag:NAME or last-pass
    run_id: str
    suite_name: str
    model: str | None = None  # --baseline-model: one stand-in for every candidate

    def stand_in(self, candidate: str) -> str:
        """The baseline run's model that candidate `candidate` is compared with."""
        return self.model or candidate

    def describe(self) -> dict[str, Any]:
        return {"ref": self.ref, "run_id": self.run_id, "model": self.model}


@dataclass(frozen=True)
class Reference:
    """The other side of one candidate's relative gates, taken from the baseline run."""

    run_id: str
    model: str
    cases: list[CaseResult]
    metrics: list[MetricValue]
    missing: list[CaseKey] = field(default_factory=list)  # scored now, never by the baseline
    reevaluated: bool = False  # the baseline model was evaluated again for missing cases
    info: dict[str, Any] = field(default_factory=dict)  # the stored model's info (how evaluated)

    @property
    def label(self) -> str:
        return f"{self.model} of run {self.run_id}"


def resolve_baseline_run(store: Store, ref: str, suite_name: str) -> str:
    """The run id that `ref` names; HarnessError (exit 2) with what exists when it names none."""
    if ref != LAST_PASS:
        return str(store.resolve_run(ref))
    run_id = store.last_passing_run(suite_name)
    if run_id is None:
        raise HarnessError(
            f"--baseline last-pass: no finished run of suite {suite_name!r} in {store.path} has "
            "passed all its gates yet; run without --baseline first, or name a run or tag:NAME"
        )
    return str(run_id)


def plan_baseline(
    store: Store, ref: str, suite: LoadedSuite, candidates: Sequence[str], model: str | None = None
) -> Baseline:
    """Resolve `--baseline REF` and check every candidate has a stand-in in that run."""
    run_id = resolve_baseline_run(store, ref, suite.name)
    stored = store.load_run(run_id)
    usable = [m.name for m in stored.models if m.status == "ok"]
    baseline = Baseline(ref, run_id, stored.summary.suite_name, model)
    lacking = [name for name in candidates if baseline.stand_in(name) not in usable]
    if lacking:
        names = [baseline.stand_in(n) for n in lacking]
        raise HarnessError(
            f"--baseline {ref}: run {run_id} has no evaluated model "
            + ", ".join(f'"{n}"{did_you_mean(n, usable)}' for n in dict.fromkeys(names))
            + f"; its models: {', '.join(usable) or 'none'}. A candidate is compared with the "
            "baseline's model of the same name; --baseline-model NAME picks one for all."
        )
    return baseline


def candidate_names(suite: LoadedSuite, selected: Sequence[Any]) -> list[str]:
    """The names the selected candidates will be recorded under (with `NAME+merged`)."""
    names = []
    for candidate in selected:
        names.append(candidate.name)
        if getattr(candidate, "merge", False) and candidate.backend is not None:
            names.append(f"{candidate.name}+merged")
    return names


def load_reference(
    store: Store, suite: LoadedSuite, baseline: Baseline, candidate: str
) -> Reference:
    """The stand-in's stored cases for the current suite, its metrics recomputed over them."""
    name = baseline.stand_in(candidate)
    stored = [case for _, case in store.load_cases(baseline.run_id, name)]
    info = dict(store.load_run(baseline.run_id).model(name).info)
    cases, missing = current_cases(suite.checks, stored)
    if missing:
        fresh = _reevaluate(store, suite, baseline, name)
        if fresh is not None:
            cases, missing = current_cases(suite.checks, fresh)
            metrics = metrics_of(suite, cases)
            return Reference(baseline.run_id, name, cases, metrics, missing, True, info)
    return Reference(baseline.run_id, name, cases, metrics_of(suite, cases), missing, info=info)


def current_cases(
    checks: Sequence[PlannedCheck], stored: Sequence[CaseResult]
) -> tuple[list[CaseResult], list[CaseKey]]:
    """The stored cases the current suite still has, and the current ones the store lacks.

    Checks that make their cases at run time (lm_eval) have no planned cases: all of theirs count.
    """
    by_key = {(c.capability, c.check, c.case_id): c for c in stored}
    found: dict[CaseKey, CaseResult] = {}
    missing: list[CaseKey] = []
    for planned in checks:
        if not planned.cases:
            for key, case in by_key.items():
                if key[:2] == (planned.capability, planned.label):
                    found.setdefault(key, case)
            continue
        for planned_case in planned.cases:
            key = (planned.capability, planned.label, planned_case.id)
            if key in by_key:
                found.setdefault(key, by_key[key])
            elif key not in missing:
                missing.append(key)
    return list(found.values()), missing


def metrics_of(suite: LoadedSuite, cases: Sequence[CaseResult]) -> list[MetricValue]:
    """The suite's metrics over stored cases, as the runner computes them from fresh outcomes."""
    outcomes: dict[int, list[Outcome]] = {i: [] for i in range(len(suite.checks))}
    for case in cases:
        index = _check_index(suite.checks, case)
        if index is not None:
            outcomes[index].append(
                Outcome(case.output, case.scores, case.passed, case.expected, case.details)
            )
    return aggregate_metrics(suite.checks, outcomes, seed=suite.spec.seed)


def _check_index(checks: Sequence[PlannedCheck], case: CaseResult) -> int | None:
    """The planned check a case belongs to: checks sharing a label are told apart by case id."""
    for index, planned in enumerate(checks):
        if (planned.capability, planned.label) != (case.capability, case.check):
            continue
        if not planned.cases or any(c.id == case.case_id for c in planned.cases):
            return index
    return None


def _reevaluate(
    store: Store, suite: LoadedSuite, baseline: Baseline, name: str
) -> list[CaseResult] | None:
    """The stand-in evaluated on the current suite through the output cache, or None when its
    weights are gone or changed (then it would no longer be the baseline)."""

    record = store.load_run(baseline.run_id).model(name)
    try:
        lm = open_model(record.reference, trust_remote_code=suite.spec.trust_remote_code)
        if record.fingerprint is None or lm.fingerprint != record.fingerprint:
            return None
        return list(evaluate_model(lm, suite, store).cases)
    except Exception:  # a deleted checkpoint or an unreachable model: report the missing cases
        return None


def annotate(gates: Sequence[GateResult], reference: Reference) -> list[GateResult]:
    """Each relative gate says which stored model it compared with and which cases it lacked."""
    against = {"run_id": reference.run_id, "model": reference.model}
    annotated = []
    for gate in gates:
        if gate.kind == "threshold":
            annotated.append(gate)
            continue
        lacking = [
            key[2]
            for key in reference.missing
            if key[0] == gate.capability and gate.metric.startswith(f"{key[1]}.")
        ]
        details = gate.details | {
            "against": against,
            "baseline_missing": lacking,
            "baseline_reevaluated": reference.reevaluated,
        }
        message = f"{gate.message} [vs {reference.label}]"
        annotated.append(replace(gate, details=details, message=message))
    return annotated


def missing_warning(candidate: str, reference: Reference) -> str | None:
    """A line for the run's output when the baseline lacked cases of the current suite."""
    if not reference.missing:
        return None
    shown = ", ".join("/".join(key) for key in reference.missing[:5])
    more = f" and {len(reference.missing) - 5} more" if len(reference.missing) > 5 else ""
    return (
        f"{candidate}: baseline {reference.label} has no result for {len(reference.missing)} "
        f"case(s) of this suite ({shown}{more}); its gates use the cases both have"
    )
