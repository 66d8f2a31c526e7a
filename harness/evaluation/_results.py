"""The results of a run, live or read back from the store: each model's record, metrics,
gates and cases, and the verdicts every output shows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.core.records import CaseResult, GateResult, MetricValue, ModelRecord, ModelRole
from harness.evaluation._gates import GATE_KINDS, Verdict, fail_on_of, gate_status, verdict_of
from harness.store import StoredRun

ALL_GATE_KINDS: frozenset[str] = frozenset(GATE_KINDS)


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


def stored_result(run: StoredRun, cases: Mapping[str, Sequence[CaseResult]]) -> RunResult:
    """A recorded run as the run view the live run's outputs read, so `harness show` renders
    (and writes JSON and Markdown for) a stored run exactly as `harness run` did when it ended.
    `cases`: model name -> its cases, from `Store.load_cases`."""
    fail_on = fail_on_of(run.config)

    def model(record: ModelRecord) -> ModelResult:
        name = record.name
        metrics, gates = list(run.metrics.get(name, ())), list(run.gates.get(name, ()))
        return ModelResult(record, metrics, gates, list(cases.get(name, ())), fail_on)

    bases = [model(m) for m in run.models if m.role == "base"]
    return RunResult(
        run.id,
        run.summary.suite_name,
        bases[0] if bases else never_recorded(run, "base", "base"),
        [model(m) for m in run.models if m.role == "candidate"],
        baseline=run.config.get("baseline"),
        source_run=run.config.get("regated_from"),
        suite_path=run.summary.suite_path,
    )


def never_recorded(run: StoredRun, name: str, role: ModelRole = "candidate") -> ModelResult:
    """A model the run never recorded is a run error: its gates were never decided, which is
    not a pass."""
    why = "interrupted before it was evaluated" if run.status == "interrupted" else "ended"
    message = f"not in run {run.id}: the run {why} without recording it"
    return ModelResult(ModelRecord(name, role, "", None, "error", message))
