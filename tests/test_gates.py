"""Gate arithmetic: pure decisions from metrics, in the direction of 'better'."""

from __future__ import annotations

import math

from harness.gates import decide_gates
from harness.records import MetricValue
from harness.suite import CapabilityBase, ForgettingGate, ImproveGate, ThresholdGate


def metric(value: float, name: str = "qa.f1", capability: str = "c") -> dict:
    return {(capability, name): MetricValue(capability, name, value, value, value, 10)}


def capability(**gates: object) -> CapabilityBase:
    return CapabilityBase(name="c", **gates)


def decide(
    gates: dict, candidate: float, base: float, lower: set[str] | None = None, name: str = "qa.f1"
):
    return decide_gates(
        [capability(**gates)], metric(candidate, name), metric(base, name), lower or set()
    )


def test_forgetting_allows_exactly_max_drop() -> None:
    gate = {"forgetting": ForgettingGate(metric="qa.f1", max_drop=0.1)}
    assert decide(gate, 0.2, 0.3)[0].passed  # 0.3 - 0.2 is 0.09999999999999998 in floats
    assert decide(gate, 0.8, 0.9)[0].passed
    failed = decide(gate, 0.79, 0.9)[0]
    assert not failed.passed and math.isclose(failed.delta, -0.11)
    assert "worsened by 0.11" in failed.message
    assert decide(gate, 0.95, 0.9)[0].passed  # improving never counts as forgetting


def test_improve_needs_the_minimum_gain() -> None:
    gate = {"improve": ImproveGate(metric="qa.f1", min_gain=0.2)}
    assert decide(gate, 0.5, 0.3)[0].passed
    assert not decide(gate, 0.49, 0.3)[0].passed
    assert not decide(gate, 0.1, 0.3)[0].passed


def test_threshold_min_and_max() -> None:
    assert decide({"threshold": ThresholdGate(metric="qa.f1", min=0.5)}, 0.5, 0.0)[0].passed
    assert not decide({"threshold": ThresholdGate(metric="qa.f1", min=0.5)}, 0.49, 0.9)[0].passed
    ppl = {"threshold": ThresholdGate(metric="p.perplexity", max=10)}
    assert decide(ppl, 9.0, 1.0, name="p.perplexity")[0].passed
    assert not decide(ppl, 11.0, 1.0, name="p.perplexity")[0].passed


def test_lower_is_better_metrics_drop_when_they_rise() -> None:
    gate = {"forgetting": ForgettingGate(metric="p.perplexity", max_drop=0.5)}
    lower = {"p.perplexity"}
    assert decide(gate, 2.4, 2.0, lower, "p.perplexity")[0].passed
    assert not decide(gate, 2.6, 2.0, lower, "p.perplexity")[0].passed
    assert decide(gate, 1.0, 2.0, lower, "p.perplexity")[0].passed
    improve = {"improve": ImproveGate(metric="p.perplexity", min_gain=1.0)}
    assert decide(improve, 1.0, 2.0, lower, "p.perplexity")[0].passed


def test_a_missing_or_nan_metric_fails_its_gate() -> None:
    gates = [capability(forgetting=ForgettingGate(metric="qa.f1", max_drop=1.0))]
    assert not decide_gates(gates, {}, metric(0.5), set())[0].passed
    assert not decide_gates(gates, metric(float("nan")), metric(0.5), set())[0].passed


def test_every_gate_of_a_capability_is_decided() -> None:
    gates = {
        "threshold": ThresholdGate(metric="qa.f1", min=0.1),
        "forgetting": ForgettingGate(metric="qa.f1", max_drop=0.1),
        "improve": ImproveGate(metric="qa.f1", min_gain=0.0),
    }
    assert [g.kind for g in decide(gates, 0.5, 0.5)] == ["threshold", "forgetting", "improve"]


def test_one_verdict_for_terminal_report_and_history_honours_fail_on() -> None:
    from harness.gates import fail_on_of, verdict_of
    from harness.history import verdict_reason
    from harness.records import GateResult, ModelRecord

    record = ModelRecord("c", "candidate", "ref", "fp", "ok")
    improve_failed = GateResult(
        "cap", "improve", "qa.f1", 0.1, 0.0, 0.1, 0.5, False, "gained too little"
    )
    assert verdict_of(record, [improve_failed]) == "regressed"
    warn_only = fail_on_of({"fail_on": ["forgetting", "threshold"]})  # as --fail-on records it
    assert verdict_of(record, [improve_failed], warn_only) == "passed"
    assert verdict_reason(record, [improve_failed], warn_only).startswith("warn-only: ")
    assert fail_on_of({}) == {"threshold", "forgetting", "improve"}  # runs made before --fail-on
    assert verdict_of(ModelRecord("c", "candidate", "ref", None, "error", "boom"), []) == "error"
