"""What a report shows, computed from stored runs: plain data, no HTML.

`report_view` turns a StoredRun and its cases into the verdicts, the metric matrix, the method
comparison and the case payload that the template and the page's script render.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.core.records import CaseResult, GateResult, MetricValue, ModelRecord
from harness.evaluation import fail_on_of, verdict_of
from harness.outputs._history import (
    Direction,
    direction,
    intervals_overlap,
    recorded_lower_is_better,
    verdict_reason,
)
from harness.outputs._text import plain_summary


@dataclass(frozen=True)
class CandidateVerdict:
    name: str
    reference: str
    verdict: str  # passed / inconclusive / regressed / error
    summary: str  # why, in one plain line
    reason: str  # every deciding gate's full message
    failed_gates: tuple[GateResult, ...]  # gates that did not pass (failed or inconclusive)
    gates_total: int
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Cell:
    """One candidate's value of one metric, against the base."""

    value: float | None
    ci_low: float | None
    ci_high: float | None
    delta: float | None
    direction: Direction
    beyond_noise: bool  # base value and candidate intervals do not overlap
    gates: tuple[GateResult, ...]

    @property
    def failed(self) -> bool:
        return any(g.failed for g in self.gates)

    @property
    def undecided(self) -> bool:
        return any(g.inconclusive for g in self.gates)


@dataclass(frozen=True)
class MatrixRow:
    capability: str
    metric: str
    lower_is_better: bool
    base: MetricValue | None
    cells: tuple[Cell, ...]  # one per candidate, in candidate order

    @property
    def severity(self) -> int:
        """2: a gate failed; 1: a gate could not tell, or some candidate got worse beyond noise;
        0: otherwise."""
        if any(c.failed for c in self.cells):
            return 2
        worse = any(c.direction == "worse" and c.beyond_noise for c in self.cells)
        return int(worse or any(c.undecided for c in self.cells))


@dataclass(frozen=True)
class MethodRow:
    """A trained candidate: its cost beside its quality."""

    name: str
    verdict: str
    training: Mapping[str, Any]
    quality: float | None
    quality_delta: float | None
    gates_held: int
    gates_total: int


@dataclass(frozen=True)
class RunView:
    run_id: str
    suite: str
    status: str
    exit_code: int | None
    started_at: str
    duration_s: float | None
    harness_version: str | None
    base: ModelRecord | None
    candidates: tuple[ModelRecord, ...]
    verdicts: tuple[CandidateVerdict, ...]
    matrix: tuple[MatrixRow, ...]
    quality_metric: tuple[str, str] | None  # (capability, metric) the method comparison ranks by
    methods: tuple[MethodRow, ...]
    loss_curves: Mapping[str, Sequence[tuple[int, float]]]
    cases: dict[str, Any] = field(repr=False)  # the JSON payload of the drill-down

    @property
    def overview(self) -> list[tuple[str, int]]:
        """How many candidates got each verdict, worst first, e.g. [("regressed", 6), ...]."""
        counts = [
            (verdict, sum(v.verdict == verdict for v in self.verdicts))
            for verdict in ("error", "regressed", "inconclusive", "passed")
        ]
        return [(verdict, count) for verdict, count in counts if count]


def report_view(run: Any, cases: Mapping[str, Sequence[CaseResult]]) -> RunView:
    """Everything the report shows of one stored run (`cases`: model name -> its cases)."""
    base = next((m for m in run.models if m.role == "base"), None)
    candidates = tuple(m for m in run.models if m.role == "candidate")
    lower = recorded_lower_is_better(run.metrics)
    quality = quality_metric(run, candidates)
    fail_on = fail_on_of(run.config)
    summary = run.summary
    return RunView(
        run_id=run.id,
        suite=summary.suite_name,
        status=summary.status,
        exit_code=summary.exit_code,
        started_at=str(summary.started_at)[:19],
        duration_s=summary.duration_s,
        harness_version=run.harness_version,
        base=base,
        candidates=candidates,
        verdicts=tuple(_verdict(m, run.gates.get(m.name, ()), fail_on) for m in candidates),
        matrix=tuple(_matrix(run, candidates, lower)),
        quality_metric=quality,
        methods=tuple(_methods(run, candidates, quality)),
        loss_curves={k: v for k, v in run.loss_curves.items() if v},
        cases=case_payload(base, candidates, cases),
    )


def _verdict(
    record: ModelRecord, gates: Sequence[GateResult], fail_on: frozenset[str]
) -> CandidateVerdict:
    failed = tuple(g for g in gates if not g.passed)
    verdict = verdict_of(record, gates, fail_on)
    return CandidateVerdict(
        record.name,
        record.reference,
        verdict,
        plain_summary(verdict, gates, fail_on, record.error),
        verdict_reason(record, gates, fail_on),
        failed,
        len(gates),
        tuple(record.info.get("warnings") or ()),
    )


def _matrix(run: Any, candidates: Sequence[ModelRecord], lower: frozenset[str]) -> list[MatrixRow]:
    base_metrics = {(m.capability, m.metric): m for m in run.metrics.get("base", ())}
    keys = list(base_metrics)
    for record in candidates:
        keys += [(m.capability, m.metric) for m in run.metrics.get(record.name, ())]
    rows = []
    for key in dict.fromkeys(keys):
        base = base_metrics.get(key)
        cells = tuple(_cell(run, record.name, key, base, key[1] in lower) for record in candidates)
        rows.append(MatrixRow(key[0], key[1], key[1] in lower, base, cells))
    # Failed gates first, then silent forgetting, then the rest; stable within each group.
    return sorted(rows, key=lambda r: -r.severity)


def _cell(
    run: Any, model: str, key: tuple[str, str], base: MetricValue | None, lower: bool
) -> Cell:
    metric = next((m for m in run.metrics.get(model, ()) if (m.capability, m.metric) == key), None)
    gates = tuple(g for g in run.gates.get(model, ()) if (g.capability, g.metric) == key)
    if metric is None:
        return Cell(None, None, None, None, "same", False, gates)
    delta = _finite(metric.value - base.value) if base is not None else None
    beyond = base is not None and not intervals_overlap(metric, base)
    return Cell(
        _finite(metric.value),
        _finite(metric.ci_low),
        _finite(metric.ci_high),
        delta,
        direction(delta, lower),
        beyond,
        gates,
    )


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


def quality_metric(run: Any, candidates: Sequence[ModelRecord]) -> tuple[str, str] | None:
    """The metric a method comparison ranks by: the first `improve` gate's, else any gated one."""
    gates = [g for record in candidates for g in run.gates.get(record.name, ())]
    for kinds in (("improve",), ("threshold", "forgetting")):
        for gate in gates:
            if gate.kind in kinds:
                return (gate.capability, gate.metric)
    base = run.metrics.get("base", ())
    return (base[0].capability, base[0].metric) if base else None


def _methods(
    run: Any, candidates: Sequence[ModelRecord], quality: tuple[str, str] | None
) -> list[MethodRow]:
    base = {(m.capability, m.metric): m.value for m in run.metrics.get("base", ())}
    rows = []
    for record in candidates:
        training = record.info.get("training")
        if not isinstance(training, Mapping):
            continue
        values = {(m.capability, m.metric): m.value for m in run.metrics.get(record.name, ())}
        value = values.get(quality) if quality else None
        base_value = base.get(quality) if quality else None
        gates = run.gates.get(record.name, ())
        rows.append(
            MethodRow(
                record.name,
                verdict_of(record, gates, fail_on_of(run.config)),
                training,
                _finite(value),
                _finite(value - base_value)
                if value is not None and base_value is not None
                else None,
                sum(g.passed for g in gates),
                len(gates),
            )
        )
    return rows


# ----------------------------------------------------------------------- the case payload


def case_payload(
    base: ModelRecord | None,
    candidates: Sequence[ModelRecord],
    cases: Mapping[str, Sequence[CaseResult]],
) -> dict[str, Any]:
    """The drill-down's data: one row per case with every model's output, compact for 50k rows.

    `models[0]` is the base. A case row is [check index, case id, prompt, expected, outputs,
    passed, scores, details], the last four holding one entry per model (null when that model has
    no such case). Cases where a candidate fails what the base passes come first.
    """
    models = [m.name for m in ([base] if base else []) + list(candidates)]
    checks: dict[tuple[str, str], int] = {}
    rows: dict[tuple[str, str, str], list[Any]] = {}
    for position, model in enumerate(models):
        for case in cases.get(model, ()):
            check = checks.setdefault((case.capability, case.check), len(checks))
            key = (case.capability, case.check, case.case_id)
            row = rows.get(key)
            if row is None:
                row = [check, case.case_id, case.prompt, case.expected, *_empty(len(models))]
                rows[key] = row
            row[4][position] = case.output
            row[5][position] = case.passed
            row[6][position] = {k: _finite(v) for k, v in case.scores.items()}
            row[7][position] = case.details or None
    first = [] if base else [None]  # _rank reads the base's outcome first
    ordered = sorted(rows.values(), key=lambda row: -_rank([*first, *row[5]]))
    return {
        "models": models,
        "has_base": base is not None,
        "checks": [list(k) for k in checks],
        "cases": ordered,
    }


def _empty(count: int) -> list[list[Any]]:
    return [[None] * count for _ in range(4)]


def _rank(passed: Sequence[bool | None]) -> int:
    """3: a candidate fails what the base passes; 2: models disagree; 1: all fail; 0: all pass."""
    if passed and passed[0] and any(p is False for p in passed[1:]):
        return 3
    outcomes = {p for p in passed if p is not None}
    return 2 if len(outcomes) > 1 else int(False in outcomes)
