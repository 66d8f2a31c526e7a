"""The plain data that flows from evaluation to gates, the store and the reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

GateKind = Literal["threshold", "forgetting", "improve"]
# pass: confidently on the right side of the limit; fail: measured on the wrong side;
# inconclusive: measured on the right side, but too few cases to be confident (harness.evaluation._gates).
GateOutcome = Literal["pass", "fail", "inconclusive"]
ModelRole = Literal["base", "candidate"]
ModelStatus = Literal["ok", "error"]


@dataclass(frozen=True)
class CaseResult:
    """One golden case scored for one model."""

    capability: str
    check: str  # the check's label: its `name`, else its `type`
    case_id: str
    prompt: str
    expected: str | None
    output: str
    scores: dict[str, float]  # metric name (without the check label) -> this case's score
    passed: bool | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MetricValue:
    """A metric of one model on one capability, e.g. capability=arithmetic, metric=exact.acc."""

    capability: str
    metric: str  # "<check label>.<metric>"
    value: float
    ci_low: float
    ci_high: float
    n: int
    lower_is_better: bool = False  # stored with the value, so history never guesses


@dataclass(frozen=True)
class GateResult:
    capability: str
    kind: GateKind
    metric: str
    value: float | None  # candidate's value
    base_value: float | None  # None for threshold gates
    delta: float | None  # value - base_value
    limit: float  # min / max_drop / min_gain as written in the suite
    outcome: GateOutcome
    message: str
    # method, p-values and their hypotheses, bounds, cases needed, flipped case ids
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.outcome == "pass"

    @property
    def failed(self) -> bool:
        return self.outcome == "fail"

    @property
    def inconclusive(self) -> bool:
        return self.outcome == "inconclusive"


@dataclass(frozen=True)
class ModelRecord:
    """A model evaluated in a run: the base or a candidate."""

    name: str
    role: ModelRole
    reference: str
    fingerprint: str | None
    status: ModelStatus
    error: str | None = None
    info: dict[str, Any] = field(default_factory=dict)  # parameters, device, training statistics
