"""Gate decisions: three outcomes, on the gated metric, in the direction of 'better'."""

from __future__ import annotations

import math
from typing import Any

import pytest

from harness.checks import CHECKS, Case, Outcome
from harness.core.records import GateResult, MetricValue, ModelRecord
from harness.evaluation import (
    STRICT,
    GateInputs,
    MetricCases,
    PairedSamples,
    decide_gates,
    fail_on_of,
    gate_status,
    verdict_of,
)
from harness.outputs._history import verdict_reason
from harness.suite._schema import CapabilityBase, ForgettingGate, ImproveGate, ThresholdGate

CHOICE = CHECKS.get("choice")
QA = CHECKS.get("qa")


def metric(value: float, name: str = "qa.f1", capability: str = "c") -> dict:
    return {(capability, name): MetricValue(capability, name, value, value, value, 10)}


def capability(**gates: object) -> CapabilityBase:
    return CapabilityBase(name="c", **gates)


def decide_point(
    gates: dict, candidate: float, base: float, lower: set[str] | None = None, name: str = "qa.f1"
) -> list[GateResult]:
    """Gates decided on point values alone (no cases)."""
    inputs = GateInputs(metric(candidate, name), metric(base, name), lower or set(), {}, {})
    return decide_gates([capability(**gates)], inputs)


def acc_cases(passes: list[int]) -> list[Outcome]:
    return [Outcome("", {"acc": float(p)}, bool(p)) for p in passes]


def decide_cases(
    gate: Any, base: list[Outcome], cand: list[Outcome], name: str, check: Any, joint: bool = False
) -> GateResult:
    """One gate decided on real cases of `check`'s metric `name` (`<label>.<metric>`)."""
    metric_name = name.split(".", 1)[1]
    ratio, value_range = check.aggregator(metric_name), check.value_range(metric_name)
    ids = [f"c{i}" for i in range(len(cand))]
    mean = lambda outcomes: sum(ratio.numerator(o) for o in outcomes) / max(len(outcomes), 1)  # noqa: E731
    key = ("c", name)
    inputs = GateInputs(
        {key: MetricValue("c", name, mean(cand), 0, 1, len(cand))},
        {key: MetricValue("c", name, mean(base), 0, 1, len(base))},
        set(),
        {key: MetricCases(ids, cand, ratio, value_range)},
        {key: PairedSamples(ids, base, cand, ratio, value_range)},
    )
    kind = type(gate).__name__.removesuffix("Gate").lower()
    return decide_gates([capability(**{kind: gate})], inputs, joint=joint)[0]


EXACT = CHECKS.get("exact")


# ------------------------------------------------------------ point mode and arithmetic


def test_forgetting_allows_exactly_max_drop() -> None:
    gate = {"forgetting": ForgettingGate(metric="qa.f1", max_drop=0.1, mode="point")}
    assert decide_point(gate, 0.2, 0.3)[0].passed  # 0.3 - 0.2 is 0.09999999999999998 in floats
    assert decide_point(gate, 0.8, 0.9)[0].passed
    failed = decide_point(gate, 0.79, 0.9)[0]
    assert failed.failed and math.isclose(failed.delta, -0.11)
    assert "worsened by 0.11" in failed.message
    assert decide_point(gate, 0.95, 0.9)[0].passed  # improving never counts as forgetting


def test_improve_needs_the_minimum_gain() -> None:
    gate = {"improve": ImproveGate(metric="qa.f1", min_gain=0.2, mode="point")}
    assert decide_point(gate, 0.5, 0.3)[0].passed
    assert decide_point(gate, 0.49, 0.3)[0].failed
    assert decide_point(gate, 0.1, 0.3)[0].failed


def test_threshold_min_and_max() -> None:
    at_least = {"threshold": ThresholdGate(metric="qa.f1", min=0.5, mode="point")}
    assert decide_point(at_least, 0.5, 0.0)[0].passed
    assert decide_point(at_least, 0.49, 0.9)[0].failed
    ppl = {"threshold": ThresholdGate(metric="p.perplexity", max=10, mode="point")}
    assert decide_point(ppl, 9.0, 1.0, name="p.perplexity")[0].passed
    assert decide_point(ppl, 11.0, 1.0, name="p.perplexity")[0].failed


def test_lower_is_better_metrics_drop_when_they_rise() -> None:
    gate = {"forgetting": ForgettingGate(metric="p.perplexity", max_drop=0.5, mode="point")}
    lower = {"p.perplexity"}
    assert decide_point(gate, 2.4, 2.0, lower, "p.perplexity")[0].passed
    assert decide_point(gate, 2.6, 2.0, lower, "p.perplexity")[0].failed
    assert decide_point(gate, 1.0, 2.0, lower, "p.perplexity")[0].passed


def test_a_missing_or_nan_metric_fails_its_gate() -> None:
    gates = [capability(forgetting=ForgettingGate(metric="qa.f1", max_drop=1.0))]
    empty = GateInputs({}, metric(0.5), set(), {}, {})
    assert decide_gates(gates, empty)[0].failed
    nan = GateInputs(metric(float("nan")), metric(0.5), set(), {}, {})
    assert decide_gates(gates, nan)[0].failed


def test_a_confidence_gate_without_cases_is_never_a_pass() -> None:
    gate = {"forgetting": ForgettingGate(metric="qa.f1", max_drop=0.1)}
    result = decide_point(gate, 0.9, 0.9)[0]
    assert result.inconclusive and "no paired cases" in result.message


def test_every_gate_of_a_capability_is_decided() -> None:
    gates = {
        "threshold": ThresholdGate(metric="qa.f1", min=0.1),
        "forgetting": ForgettingGate(metric="qa.f1", max_drop=0.1),
        "improve": ImproveGate(metric="qa.f1", min_gain=0.0),
    }
    assert [g.kind for g in decide_point(gates, 0.5, 0.5)] == ["threshold", "forgetting", "improve"]


# ------------------------------------------------------------ the three scenarios of issue 11


def test_three_of_three_lost_fails() -> None:
    gate = ForgettingGate(metric="exact.acc", max_drop=0.1)
    result = decide_cases(gate, acc_cases([1, 1, 1]), acc_cases([0, 0, 0]), "exact.acc", EXACT)
    assert result.failed and not result.details["significant"]
    assert "not significant at n=3" in result.message
    assert result.details["flips"]["worse"] == ["c0", "c1", "c2"]


def test_a_significant_drop_on_forty_items_fails_even_when_its_bound_is_near_the_limit() -> None:
    # 0.45 -> 0.20 on 40 items, as on the real model: 12 lost, 2 gained.
    base = [1] * 12 + [0] * 2 + [1] * 6 + [0] * 20
    cand = [0] * 12 + [1] * 2 + [1] * 6 + [0] * 20
    gate = ForgettingGate(metric="exact.acc", max_drop=0.05)
    result = decide_cases(gate, acc_cases(base), acc_cases(cand), "exact.acc", EXACT)
    assert result.failed and result.details["significant"]
    assert result.details["p_value"] < 0.05 and result.details["hypothesis"] == "drop ≤ 0.05"


def test_a_fifty_point_drop_on_twelve_cases_fails() -> None:
    base = [1] * 10 + [0] * 2
    cand = [1] * 4 + [0] * 8
    gate = ForgettingGate(metric="exact.acc", max_drop=0.1)
    result = decide_cases(gate, acc_cases(base), acc_cases(cand), "exact.acc", EXACT)
    assert result.failed and result.delta == pytest.approx(-0.5)


def test_an_identical_candidate_is_inconclusive_on_a_small_suite_and_passes_on_a_large_one() -> (
    None
):
    gate = ForgettingGate(metric="exact.acc", max_drop=0.1)
    few = acc_cases([1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1])
    small = decide_cases(gate, few, few, "exact.acc", EXACT)
    assert small.inconclusive and small.details["cases_needed"] == 29
    assert "about 29 cases would tell (the suite has 12)" in small.message
    many = acc_cases([1, 0, 1, 1] * 10)
    assert decide_cases(gate, many, many, "exact.acc", EXACT).passed


def test_improve_and_threshold_have_three_outcomes_too() -> None:
    improve = ImproveGate(metric="exact.acc", min_gain=0.1)
    certain = decide_cases(improve, acc_cases([0] * 50), acc_cases([1] * 25 + [0] * 25), "exact.acc", EXACT)  # fmt: skip
    assert certain.passed
    unsure = decide_cases(improve, acc_cases([0] * 10), acc_cases([1] * 2 + [0] * 8), "exact.acc", EXACT)  # fmt: skip
    assert unsure.inconclusive  # +0.2 on 10 cases: on the right side, not sure
    exactly = decide_cases(improve, acc_cases([0] * 10), acc_cases([1] + [0] * 9), "exact.acc", EXACT)  # fmt: skip
    assert exactly.inconclusive and exactly.details["cases_needed"] is None  # +0.1: on the limit
    short = decide_cases(improve, acc_cases([0] * 10), acc_cases([0] * 10), "exact.acc", EXACT)  # fmt: skip
    assert short.failed
    threshold = ThresholdGate(metric="exact.acc", min=0.9)
    assert decide_cases(threshold, [], acc_cases([1, 1, 1]), "exact.acc", EXACT).inconclusive
    assert decide_cases(threshold, [], acc_cases([1] * 40), "exact.acc", EXACT).passed
    assert decide_cases(threshold, [], acc_cases([1] * 8 + [0] * 2), "exact.acc", EXACT).failed


# ------------------------------------------------------------ evidence on the gated metric


def choice_case(acc: int, acc_norm: int) -> Outcome:
    return Outcome("A", {"acc": float(acc), "acc_norm": float(acc_norm)}, bool(acc))


def test_acc_norm_gates_count_acc_norm_flips_and_cases() -> None:
    # acc never moves; acc_norm loses cases 0-1 and gains case 5.
    base = [choice_case(1, 1), choice_case(1, 1), choice_case(0, 1), choice_case(1, 0)]
    base += [choice_case(1, 1), choice_case(0, 0)] + [choice_case(1, 1)] * 6
    cand = [choice_case(1, 0), choice_case(1, 0), choice_case(0, 1), choice_case(1, 0)]
    cand += [choice_case(1, 1), choice_case(0, 1)] + [choice_case(1, 1)] * 6
    gate = ForgettingGate(metric="choice.acc_norm", max_drop=0.1)
    result = decide_cases(gate, base, cand, "choice.acc_norm", CHOICE)
    assert result.details["flips"] == {"basis": "metric", "worse": ["c0", "c1"], "better": ["c5"]}
    assert result.details["method"] == "exact_unconditional"
    assert result.details["estimate"] == pytest.approx(-1 / 12)
    # acc itself did not move at all: its gate sees no flip, and 12 cases cannot tell.
    acc = decide_cases(
        ForgettingGate(metric="choice.acc", max_drop=0.1), base, cand, "choice.acc", CHOICE
    )
    assert acc.details["flips"]["worse"] == [] and acc.details["estimate"] == 0.0
    assert acc.inconclusive and acc.details["cases_needed"] == 29  # 0.9^n <= 0.05 from n = 29
    assert acc.details["p_value"] == pytest.approx(0.9**12)


def qa_case(output: str, gold: str) -> Outcome:
    from harness.checks.qa import QaParams, score_qa

    return score_qa(output, Case("x", "q", {"answers": [gold]}, ""), QaParams(cases=[{}]))


def test_qa_f1_gates_count_the_cases_whose_f1_fell_and_rose() -> None:
    golds = ["Paris", "Tokyo", "Rome", "Berlin"]
    base = [
        qa_case(o, g) for o, g in zip(["Paris", "Tokyo city", "Rome", "Bonn"], golds, strict=True)
    ]
    cand = [
        qa_case(o, g) for o, g in zip(["Paris", "Tokyo", "in Rome now", "Bonn"], golds, strict=True)
    ]
    # EM: case 1 went 0 -> 1, case 2 went 1 -> 0; F1: case 1 rose (0.67 -> 1), case 2 fell.
    gate = ForgettingGate(metric="qa.f1", max_drop=0.5)
    result = decide_cases(gate, base, cand, "qa.f1", QA)
    assert result.details["flips"] == {"basis": "metric", "worse": ["c2"], "better": ["c1"]}
    assert result.details["method"] == "t"


# ------------------------------------------------------------ verdicts and the build


def record(status: str = "ok") -> ModelRecord:
    return ModelRecord("c", "candidate", "ref", "fp", status)  # type: ignore[arg-type]


def gate(kind: str, outcome: str) -> GateResult:
    return GateResult("cap", kind, "qa.f1", 0.1, 0.0, 0.1, 0.5, outcome, "msg")  # type: ignore[arg-type]


def test_one_verdict_for_terminal_report_and_history_honours_fail_on() -> None:
    improve_failed = gate("improve", "fail")
    assert verdict_of(record(), [improve_failed]) == "regressed"
    warn_only = fail_on_of({"fail_on": ["forgetting", "threshold"]})  # as --fail-on records it
    assert verdict_of(record(), [improve_failed], warn_only) == "passed"
    assert verdict_reason(record(), [improve_failed], warn_only).startswith("warn-only: ")
    assert fail_on_of({}) == {"threshold", "forgetting", "improve"}  # runs made before --fail-on
    assert verdict_of(ModelRecord("c", "candidate", "ref", None, "error", "boom"), []) == "error"


def test_inconclusive_warns_by_default_and_fails_under_strict() -> None:
    unsure = gate("forgetting", "inconclusive")
    everything = fail_on_of({})
    assert gate_status(unsure, everything) == "inconclusive"
    assert verdict_of(record(), [gate("threshold", "pass"), unsure]) == "inconclusive"
    assert verdict_of(record(), [unsure, gate("improve", "fail")]) == "regressed"
    assert gate_status(unsure, everything | {STRICT}) == "fail"
    assert verdict_of(record(), [unsure], everything | {STRICT}) == "regressed"
    assert gate_status(unsure, {"threshold"}) == "warn"  # a kind --fail-on leaves out


def test_holm_keeps_only_the_passes_that_hold_jointly() -> None:
    few = acc_cases([1, 1, 0] * 12)  # 36 identical cases: a lone pass at p = 0.024
    lone = ForgettingGate(metric="exact.acc", max_drop=0.1)
    assert decide_cases(lone, few, few, "exact.acc", EXACT).passed
    two = CapabilityBase(
        name="c",
        forgetting=lone,
        threshold=ThresholdGate(metric="exact.acc", min=0.3),
    )
    ids = [f"c{i}" for i in range(36)]
    ratio = EXACT.aggregator("acc")
    key = ("c", "exact.acc")
    value = {key: MetricValue("c", "exact.acc", 2 / 3, 0, 1, 36)}
    inputs = GateInputs(
        value,
        value,
        set(),
        {key: MetricCases(ids, few, ratio)},
        {key: PairedSamples(ids, few, few, ratio)},
    )
    alone = decide_gates([two], inputs)
    joint = decide_gates([two], inputs, joint=True)
    assert [g.outcome for g in alone] == ["pass", "pass"]
    # Holm: the smaller p (threshold, ~1e-6) must be <= 0.05/2, the larger (0.024) <= 0.05/1.
    assert [g.outcome for g in joint] == ["pass", "pass"]
    assert 0.9**36 <= alone[1].details["p_pass"] < 0.025
    # 30 cases: forgetting p = 0.9^30 = 0.042, threshold p = P(X >= 20 | 0.49) = 0.036: each
    # passes alone, but neither is below 0.05 / 2, so Holm stops at the first.
    worse = acc_cases([1, 1, 0] * 10)
    ids30 = ids[:30]
    inputs30 = GateInputs(
        value,
        value,
        set(),
        {key: MetricCases(ids30, worse, ratio)},
        {key: PairedSamples(ids30, worse, worse, ratio)},
    )
    strict_two = CapabilityBase(
        name="c",
        forgetting=lone,
        threshold=ThresholdGate(metric="exact.acc", min=0.49),
    )
    single = decide_gates([strict_two], inputs30)
    together = decide_gates([strict_two], inputs30, joint=True)
    assert [g.outcome for g in single] == ["pass", "pass"]
    p_values = sorted(g.details["p_pass"] for g in single)
    assert 0.025 < p_values[0] < p_values[1] < 0.05
    assert [g.outcome for g in together] == ["inconclusive", "inconclusive"]
    assert "Holm" in together[0].message
