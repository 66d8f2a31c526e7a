"""History and comparison of stored runs: pure functions over what the store returns.

Regression is data (STYLE.md 8): nothing here opens the store, a file or a model. The CLI loads
runs with `Store.load_run` / `Store.load_cases` and hands them in; tests build them by hand too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from harness.core.records import CaseResult, GateResult, MetricValue, ModelRecord
from harness.evaluation import GATE_KINDS, Verdict, gate_status, verdict_of

Direction = Literal["better", "worse", "same", "new", "gone"]
MetricKey = tuple[str, str, str]  # (model, capability, metric)
CaseKey = tuple[str, str, str]  # (capability, check, case_id)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def verdict_reason(
    record: ModelRecord, gates: Sequence[GateResult], fail_on: Iterable[str] = GATE_KINDS
) -> str:
    """Why a candidate got its verdict, in words (what `harness run` prints beside it)."""
    if record.status == "error":
        return record.error or "failed without a message"
    statuses = [(g, gate_status(g, fail_on)) for g in gates]
    failed = [g for g, s in statuses if s == "fail"]
    undecided = [g for g, s in statuses if s == "inconclusive"]
    warned = [g for g, s in statuses if s == "warn"]
    if failed:
        return "; ".join(f"{g.capability}: {g.message}" for g in failed)
    if undecided:  # too few cases to tell: not a pass
        return "; ".join(f"{g.capability}: {g.message}" for g in undecided)
    if warned:  # --fail-on made these kinds warn-only: they did not fail the build
        return "warn-only: " + "; ".join(f"{g.capability}: {g.message}" for g in warned)
    if not gates:
        return "no gates to hold"
    return "its one gate held" if len(gates) == 1 else f"all {len(gates)} gates held"


def recorded_lower_is_better(metrics: Mapping[str, Sequence[MetricValue]]) -> frozenset[str]:
    """Metric names (`<label>.<metric>`) recorded as lower-is-better (stored with each metric)."""
    return frozenset(m.metric for values in metrics.values() for m in values if m.lower_is_better)


def direction(delta: float | None, lower_is_better: bool, *, tolerance: float = 1e-9) -> Direction:
    """Whether a change of `delta` is for the better, given which way the metric points."""
    if delta is None or math.isnan(delta) or abs(delta) <= tolerance:
        return "same"
    better = delta < 0 if lower_is_better else delta > 0
    return "better" if better else "worse"


def intervals_overlap(a: MetricValue, b: MetricValue) -> bool:
    """Whether two metrics' confidence intervals overlap (if not, the change is beyond noise)."""
    return a.ci_low <= b.ci_high and b.ci_low <= a.ci_high


# --------------------------------------------------------------------------------- history


@dataclass(frozen=True)
class RunPoint:
    """One metric of one model in one run."""

    run_id: str
    value: float
    ci_low: float
    ci_high: float
    n: int


@dataclass(frozen=True)
class MetricSeries:
    """A metric of one model across the runs of a suite, oldest run first."""

    model: str
    capability: str
    metric: str
    points: tuple[RunPoint, ...]
    lower_is_better: bool

    @property
    def change(self) -> float | None:
        """Last value minus first (None with fewer than two points)."""
        if len(self.points) < 2:
            return None
        return self.points[-1].value - self.points[0].value


@dataclass(frozen=True)
class RunMetrics:
    """What history needs of a stored run: its id and its metrics per model."""

    run_id: str
    metrics: Mapping[str, Sequence[MetricValue]]
    started_at: datetime | None = None  # orders runs started within the same second


def metric_history(runs: Sequence[RunMetrics]) -> list[MetricSeries]:
    """Every (model, capability, metric) across `runs`, ordered by start time, then run id.

    Series come in the order of first appearance: models as recorded, metrics as evaluated.
    """
    ordered = sorted(runs, key=lambda r: (r.started_at or _EPOCH, r.run_id))
    points: dict[MetricKey, list[RunPoint]] = {}
    lower: set[str] = set()
    for run in ordered:
        lower |= recorded_lower_is_better(run.metrics)
        for model, values in run.metrics.items():
            for m in values:
                point = RunPoint(run.run_id, m.value, m.ci_low, m.ci_high, m.n)
                points.setdefault((model, m.capability, m.metric), []).append(point)
    return [
        MetricSeries(model, capability, metric, tuple(items), metric in lower)
        for (model, capability, metric), items in points.items()
    ]


# --------------------------------------------------------------------------------- compare


@dataclass(frozen=True)
class MetricChange:
    """One metric of one model in run A and run B."""

    model: str
    capability: str
    metric: str
    a: MetricValue | None
    b: MetricValue | None
    lower_is_better: bool

    @property
    def delta(self) -> float | None:
        if self.a is None or self.b is None:
            return None
        return self.b.value - self.a.value

    @property
    def direction(self) -> Direction:
        if self.a is None:
            return "new"
        if self.b is None:
            return "gone"
        return direction(self.delta, self.lower_is_better)

    @property
    def beyond_noise(self) -> bool:
        """The two 95% intervals do not overlap."""
        return self.a is not None and self.b is not None and not intervals_overlap(self.a, self.b)


@dataclass(frozen=True)
class CaseFlip:
    """A case whose pass/fail outcome changed between run A and run B for one model."""

    model: str
    capability: str
    check: str
    case_id: str
    prompt: str
    expected: str | None
    output_a: str
    output_b: str
    passed_a: bool | None
    passed_b: bool | None

    @property
    def fixed(self) -> bool:
        return bool(self.passed_b) and not self.passed_a


@dataclass(frozen=True)
class VerdictChange:
    model: str
    a: Verdict | None  # None: the model is not in run A
    b: Verdict | None


@dataclass(frozen=True)
class RunSide:
    """What compare needs of one stored run."""

    run_id: str
    models: Sequence[ModelRecord]
    metrics: Mapping[str, Sequence[MetricValue]]
    gates: Mapping[str, Sequence[GateResult]]
    cases: Mapping[str, Sequence[CaseResult]]  # model name -> its cases
    fail_on: frozenset[str] = frozenset(GATE_KINDS)  # as the run recorded it (--fail-on)


@dataclass(frozen=True)
class Comparison:
    run_a: str
    run_b: str
    verdicts: tuple[VerdictChange, ...]
    metrics: tuple[MetricChange, ...]
    flips: tuple[CaseFlip, ...]
    outputs_changed: int  # cases whose output text changed, flipped or not

    @property
    def regressions(self) -> tuple[CaseFlip, ...]:
        return tuple(f for f in self.flips if not f.fixed)

    @property
    def fixes(self) -> tuple[CaseFlip, ...]:
        return tuple(f for f in self.flips if f.fixed)


def compare_runs(a: RunSide, b: RunSide) -> Comparison:
    """What changed from run A to run B: candidate verdicts, every metric, every case that flipped.

    Models are matched by name, metrics by (capability, metric), cases by (capability, check, id).
    """
    lower = recorded_lower_is_better(a.metrics) | recorded_lower_is_better(b.metrics)
    flips: list[CaseFlip] = []
    changed = 0
    for model in _union(list(a.cases), list(b.cases)):
        model_flips, model_changed = _case_changes(
            model, a.cases.get(model, ()), b.cases.get(model, ())
        )
        flips += model_flips
        changed += model_changed
    return Comparison(
        a.run_id,
        b.run_id,
        _verdict_changes(a, b),
        tuple(_metric_changes(a.metrics, b.metrics, lower)),
        tuple(flips),
        changed,
    )


def _union(first: Sequence[str], second: Sequence[str]) -> list[str]:
    return list(dict.fromkeys([*first, *second]))


def _verdict_changes(a: RunSide, b: RunSide) -> tuple[VerdictChange, ...]:
    def verdicts(side: RunSide) -> dict[str, Verdict]:
        return {
            m.name: verdict_of(m, side.gates.get(m.name, ()), side.fail_on)
            for m in side.models
            if m.role == "candidate"
        }

    va, vb = verdicts(a), verdicts(b)
    return tuple(VerdictChange(n, va.get(n), vb.get(n)) for n in _union(list(va), list(vb)))


def _metric_changes(
    a: Mapping[str, Sequence[MetricValue]],
    b: Mapping[str, Sequence[MetricValue]],
    lower: frozenset[str],
) -> list[MetricChange]:
    changes = []
    for model in _union(list(a), list(b)):
        ia = {(m.capability, m.metric): m for m in a.get(model, ())}
        ib = {(m.capability, m.metric): m for m in b.get(model, ())}
        for capability, metric in _union_keys(ia, ib):
            key = (capability, metric)
            changes.append(
                MetricChange(model, capability, metric, ia.get(key), ib.get(key), metric in lower)
            )
    return changes


def _union_keys(a: Mapping[Any, Any], b: Mapping[Any, Any]) -> list[Any]:
    return list(dict.fromkeys([*a, *b]))


def _case_changes(
    model: str, cases_a: Sequence[CaseResult], cases_b: Sequence[CaseResult]
) -> tuple[list[CaseFlip], int]:
    index_a = {case_key(c): c for c in cases_a}
    flips, changed = [], 0
    for case in cases_b:
        before = index_a.get(case_key(case))
        if before is None:
            continue
        changed += before.output != case.output
        if before.passed is None or case.passed is None or before.passed == case.passed:
            continue
        flips.append(
            CaseFlip(
                model,
                case.capability,
                case.check,
                case.case_id,
                case.prompt,
                case.expected,
                before.output,
                case.output,
                before.passed,
                case.passed,
            )
        )
    return flips, changed


def case_key(case: CaseResult) -> CaseKey:
    return (case.capability, case.check, case.case_id)
