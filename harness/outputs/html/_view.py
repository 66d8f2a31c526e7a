"""What a report shows, computed from the run view every output shares: plain data, no HTML.

`report_view` turns a `RunResult` (live, or read back by `stored_result`) and what the store adds
about the run (`RunAbout`: when, how long, loss curves) into the verdicts, the metric matrix, the
method comparison and the case payload that the template and the page's script render.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.core.records import GateResult, MetricValue, ModelRecord
from harness.core.scores import finite as _finite
from harness.evaluation import ModelResult, RunResult
from harness.outputs._history import (
    Direction,
    direction,
    intervals_overlap,
    recorded_lower_is_better,
    verdict_reason,
)
from harness.outputs._text import (
    checkpoint_record,
    plain_summary,
    selection_text,
    stop_text,
)
from harness.store import StoredRun


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
class QuantizedRow:
    """The base or a quantized candidate: did quantizing break a capability, what did it save."""

    name: str
    quantized: str  # "" for the base, else int8 / nf4
    verdict: str  # "" for the base
    quality: float | None
    quality_delta: float | None
    gates_held: int
    gates_total: int
    weights_bytes: int | None
    weights_vs_base: float | None
    seconds: float | None  # loading + evaluating; None when served from the cache
    seconds_vs_base: float | None
    note: str = ""


@dataclass(frozen=True)
class GateLine:
    """A gate on a checkpoint curve: its limit as the suite writes it (max_drop, min_gain, or the
    threshold) and where that puts the line on the metric's scale."""

    kind: str
    limit: float
    line: float | None  # None: a relative gate with no base value to draw it from

    @property
    def label(self) -> str:
        return f"limit ({self.kind})"


@dataclass(frozen=True)
class CurvePoint:
    step: int
    value: float | None
    ci_low: float | None
    ci_high: float | None
    outcomes: tuple[str, ...]  # each gate's on this metric at this step, in `gates` order


@dataclass(frozen=True)
class CheckpointCurve:
    """One candidate's gated metric across its checkpoints, with what it is judged against."""

    candidate: str
    capability: str
    metric: str
    lower_is_better: bool
    base_value: float | None
    gates: tuple[GateLine, ...]
    points: tuple[CurvePoint, ...]
    selected_step: int | None
    stopped_at: int | None
    selection: str  # the record's note: last / best-passing / why the last one is kept


@dataclass(frozen=True)
class CandidateCheckpoints:
    """A trained candidate's checkpoint evaluations: which was selected, why, and its curves."""

    candidate: str
    every: int | None
    steps: tuple[int, ...]
    selected_step: int | None
    selection: str
    stopped_at: int | None
    stop_reason: str | None
    summary: str  # e.g. "selected step 50 of 150 (best-passing)"
    stopped: str  # e.g. "stopped early at step 20: a forgetting gate failed ...", or ""
    curves: tuple[CheckpointCurve, ...]


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
    quantized: tuple[QuantizedRow, ...] = ()
    checkpoints: tuple[CandidateCheckpoints, ...] = ()

    @property
    def overview(self) -> list[tuple[str, int]]:
        """How many candidates got each verdict, worst first, e.g. [("regressed", 6), ...]."""
        counts = [
            (verdict, sum(v.verdict == verdict for v in self.verdicts))
            for verdict in ("error", "regressed", "inconclusive", "passed")
        ]
        return [(verdict, count) for verdict, count in counts if count]


@dataclass(frozen=True)
class RunAbout:
    """What the store knows of a run beside its results. The defaults describe a live run that
    was not stored: its status and exit code are then its results' own."""

    started_at: str = ""
    duration_s: float | None = None
    status: str | None = None  # a stored run's: may be "interrupted" or "running"
    exit_code: int | None = None
    harness_version: str | None = None
    loss_curves: Mapping[str, Sequence[tuple[int, float]]] = field(default_factory=dict)
    base_recorded: bool = True  # False: the run stopped before it recorded its base

    @classmethod
    def of(cls, run: StoredRun) -> RunAbout:
        summary = run.summary
        return cls(
            started_at=str(summary.started_at)[:19],
            duration_s=summary.duration_s,
            status=summary.status,
            exit_code=summary.exit_code,
            harness_version=run.harness_version,
            loss_curves={k: v for k, v in run.loss_curves.items() if v},
            base_recorded=any(m.role == "base" for m in run.models),
        )


def report_view(result: RunResult, about: RunAbout | None = None) -> RunView:
    """Everything the report shows of one run."""
    about = about or RunAbout()
    base = result.base if about.base_recorded else None
    models = [*([base] if base else []), *result.candidates]
    lower = recorded_lower_is_better({m.record.name: m.metrics for m in models})
    quality = quality_metric(base, result.candidates)
    return RunView(
        run_id=result.run_id,
        suite=result.suite,
        status=about.status or result.status,
        exit_code=about.exit_code if about.status else result.exit_code,
        started_at=about.started_at,
        duration_s=about.duration_s,
        harness_version=about.harness_version,
        base=base.record if base else None,
        candidates=tuple(c.record for c in result.candidates),
        verdicts=tuple(_verdict(c) for c in result.candidates),
        matrix=tuple(_matrix(base, result.candidates, lower)),
        quality_metric=quality,
        methods=tuple(_methods(base, result.candidates, quality)),
        loss_curves=dict(about.loss_curves),
        cases=case_payload(base, result.candidates),
        quantized=tuple(_quantized(base, result.candidates, quality)),
        checkpoints=tuple(_checkpoints(base, result.candidates, lower)),
    )


def _verdict(candidate: ModelResult) -> CandidateVerdict:
    record, gates, fail_on = candidate.record, candidate.gates, candidate.fail_on
    return CandidateVerdict(
        record.name,
        record.reference,
        candidate.verdict,
        plain_summary(candidate.verdict, gates, fail_on, record.error),
        verdict_reason(record, gates, fail_on),
        tuple(g for g in gates if not g.passed),
        len(gates),
        candidate.warnings,
    )


def _matrix(
    base: ModelResult | None, candidates: Sequence[ModelResult], lower: frozenset[str]
) -> list[MatrixRow]:
    base_metrics = {(m.capability, m.metric): m for m in (base.metrics if base else ())}
    keys = list(base_metrics)
    for candidate in candidates:
        keys += [(m.capability, m.metric) for m in candidate.metrics]
    rows = []
    for key in dict.fromkeys(keys):
        reference = base_metrics.get(key)
        cells = tuple(_cell(c, key, reference, key[1] in lower) for c in candidates)
        rows.append(MatrixRow(key[0], key[1], key[1] in lower, reference, cells))
    # Failed gates first, then silent forgetting, then the rest; stable within each group.
    return sorted(rows, key=lambda r: -r.severity)


def _cell(
    candidate: ModelResult, key: tuple[str, str], base: MetricValue | None, lower: bool
) -> Cell:
    metric = next((m for m in candidate.metrics if (m.capability, m.metric) == key), None)
    gates = tuple(g for g in candidate.gates if (g.capability, g.metric) == key)
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


def quality_metric(
    base: ModelResult | None, candidates: Sequence[ModelResult]
) -> tuple[str, str] | None:
    """The metric a method comparison ranks by: the first `improve` gate's, else any gated one."""
    gates = [g for candidate in candidates for g in candidate.gates]
    for kinds in (("improve",), ("threshold", "forgetting")):
        for gate in gates:
            if gate.kind in kinds:
                return (gate.capability, gate.metric)
    return (base.metrics[0].capability, base.metrics[0].metric) if base and base.metrics else None


def _methods(
    base: ModelResult | None, candidates: Sequence[ModelResult], quality: tuple[str, str] | None
) -> list[MethodRow]:
    base_values = {(m.capability, m.metric): m.value for m in (base.metrics if base else ())}
    rows = []
    for candidate in candidates:
        training = candidate.record.info.get("training")
        if not isinstance(training, Mapping):
            continue
        values = {(m.capability, m.metric): m.value for m in candidate.metrics}
        value = values.get(quality) if quality else None
        base_value = base_values.get(quality) if quality else None
        rows.append(
            MethodRow(
                candidate.record.name,
                candidate.verdict,
                training,
                _finite(value),
                _finite(value - base_value)
                if value is not None and base_value is not None
                else None,
                sum(g.passed for g in candidate.gates),
                len(candidate.gates),
            )
        )
    return rows


def _quantized(
    base: ModelResult | None, candidates: Sequence[ModelResult], quality: tuple[str, str] | None
) -> list[QuantizedRow]:
    """The base, then each quantized candidate, with cost as ratios to the base's."""
    quantized = [c for c in candidates if "quantized" in c.record.info]
    if not quantized:
        return []
    rows = [_quantized_row(base, quality, None)] if base else []
    return rows + [_quantized_row(c, quality, base) for c in quantized]


def _value(model: ModelResult, quality: tuple[str, str] | None) -> float | None:
    found = (m.value for m in model.metrics if (m.capability, m.metric) == quality)
    return _finite(next(found, None))


def _quantized_row(
    model: ModelResult, quality: tuple[str, str] | None, base: ModelResult | None
) -> QuantizedRow:
    """One row; `base` is None for the base's own row (no verdict, no ratios)."""
    weights, seconds = _cost(model.record.info)
    base_weights, base_seconds = _cost(base.record.info) if base else (None, None)
    value = _value(model, quality)
    base_value = _value(base, quality) if base else None
    return QuantizedRow(
        model.record.name,
        str(model.record.info.get("quantized", "")),
        model.verdict if base else "",
        value,
        value - base_value if value is not None and base_value is not None else None,
        sum(g.passed for g in model.gates),
        len(model.gates),
        weights,
        weights / base_weights if weights and base_weights else None,
        seconds,
        seconds / base_seconds if seconds and base_seconds else None,
        "" if seconds is not None else "time not measured: outputs served from the cache",
    )


def _cost(info: Mapping[str, Any]) -> tuple[int | None, float | None]:
    """Weights' bytes and evaluation seconds, when this run loaded the model and computed every
    output (a cached rerun's seconds measure the cache, not the model)."""
    loaded = info.get("loaded") is not False
    weights = info.get("weights_bytes") if loaded else None
    seconds = info.get("seconds")
    computed = loaded and not info.get("requests_cached")
    return (
        int(weights) if isinstance(weights, int | float) else None,
        float(seconds) if computed and isinstance(seconds, int | float) else None,
    )


# ------------------------------------------------------------------------- checkpoints


def _checkpoints(
    base: ModelResult | None, candidates: Sequence[ModelResult], lower: frozenset[str]
) -> list[CandidateCheckpoints]:
    base_values = {
        (m.capability, m.metric): _finite(m.value) for m in (base.metrics if base else ())
    }
    out = []
    for candidate in candidates:
        record = checkpoint_record(candidate.record.info)
        if record is None:
            continue
        points = [p for p in record["points"] if isinstance(p, Mapping)]
        gated = dict.fromkeys(
            (g["capability"], g["metric"]) for p in points for g in p.get("gates") or ()
        )
        name = candidate.record.name
        curves = tuple(
            _curve(name, record, points, key, base_values.get(key), key[1] in lower)
            for key in gated
        )
        settings = record.get("settings")
        every = settings.get("every") if isinstance(settings, Mapping) else None
        out.append(
            CandidateCheckpoints(
                name,
                every if isinstance(every, int) else None,
                tuple(int(p["step"]) for p in points),
                record.get("selected_step"),
                str(record.get("selection") or ""),
                record.get("stopped_at"),
                record.get("stop_reason"),
                selection_text(record),
                stop_text(record),
                curves,
            )
        )
    return out


def _curve(
    candidate: str,
    record: Mapping[str, Any],
    points: Sequence[Mapping[str, Any]],
    key: tuple[str, str],
    base_value: float | None,
    lower: bool,
) -> CheckpointCurve:
    """The metric `key` at each checkpoint. The base drawn is the gates' reference value where
    they have one (the base, or a baseline run's model), else the base model's own value."""
    gates_at = [
        [g for g in p.get("gates") or () if (g["capability"], g["metric"]) == key] for p in points
    ]
    limits: dict[str, float] = {}  # gate kind -> its limit as written, in the gates' order
    for gates in gates_at:
        for gate in gates:
            limits.setdefault(str(gate["kind"]), float(gate["limit"]))
            reference = _number(gate.get("base_value"))
            base_value = reference if reference is not None else base_value
    curve_points = []
    for point, gates in zip(points, gates_at, strict=True):
        metrics = point.get("metrics") or ()
        found = next((m for m in metrics if (m["capability"], m["metric"]) == key), None)
        value = found.get("value") if found else next((g.get("value") for g in gates), None)
        outcomes = {str(g["kind"]): str(g["outcome"]) for g in gates}
        curve_points.append(
            CurvePoint(
                int(point["step"]),
                _number(value),
                _number(found.get("ci_low")) if found else None,
                _number(found.get("ci_high")) if found else None,
                tuple(outcomes.get(kind, "") for kind in limits),
            )
        )
    return CheckpointCurve(
        candidate,
        key[0],
        key[1],
        lower,
        base_value,
        tuple(GateLine(k, v, limit_line(k, v, base_value, lower)) for k, v in limits.items()),
        tuple(curve_points),
        record.get("selected_step"),
        record.get("stopped_at"),
        str(record.get("selection") or ""),
    )


def _number(value: Any) -> float | None:
    return _finite(float(value)) if isinstance(value, int | float) else None


def limit_line(kind: str, limit: float, base_value: float | None, lower: bool) -> float | None:
    """Where a gate's limit lies on its metric's scale: a threshold is the line itself; a
    forgetting gate's max_drop lies below the base (above it when lower is better), an improve
    gate's min_gain above it (below it when lower is better)."""
    if kind == "threshold":
        return limit
    if base_value is None:
        return None
    worse = 1.0 if lower else -1.0  # the direction of "worse" on the metric's scale
    return base_value + (worse * limit if kind == "forgetting" else -worse * limit)


# ----------------------------------------------------------------------- the case payload


def case_payload(base: ModelResult | None, candidates: Sequence[ModelResult]) -> dict[str, Any]:
    """The drill-down's data: one row per case with every model's output, compact for 50k rows.

    `models[0]` is the base. A case row is [check index, case id, prompt, expected, outputs,
    passed, scores, details], the last four holding one entry per model (null when that model has
    no such case). Cases where a candidate fails what the base passes come first.
    """
    models = [*([base] if base else []), *candidates]
    checks: dict[tuple[str, str], int] = {}
    rows: dict[tuple[str, str, str], list[Any]] = {}
    for position, model in enumerate(models):
        for case in model.cases:
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
        "models": [m.record.name for m in models],
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
