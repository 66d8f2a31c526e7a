"""Paired statistics behind gate verdicts, checked against scipy and against hand counts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from harness.checks import Outcome, Ratio
from harness.gates import PairedSamples, decide_gates
from harness.records import MetricValue
from harness.stats import mcnemar_delta, paired_delta
from harness.suite import CapabilityBase, ForgettingGate, ImproveGate

ACC = Ratio(lambda o: o.scores["acc"])


def outcomes(passed: list[bool]) -> list[Outcome]:
    return [Outcome("", {"acc": float(p)}, p) for p in passed]


def test_mcnemar_p_value_is_scipys_exact_binomial_test() -> None:
    base = np.array([True] * 40 + [False] * 10 + [True] * 5 + [False] * 45)
    cand = np.array([True] * 40 + [True] * 10 + [False] * 5 + [False] * 45)  # 10 fixed, 5 broken
    result = mcnemar_delta(base, cand, 0.95)
    assert result.gain == pytest.approx((10 - 5) / 100)
    assert result.p_value == pytest.approx(scipy_stats.binomtest(10, 15, 0.5).pvalue)
    assert result.method == "mcnemar_exact" and result.low < result.gain < result.high


def test_mcnemar_bounds_are_clopper_pearson_on_discordant_pairs() -> None:
    base = np.array([True] * 20 + [True] * 80)
    cand = np.array([False] * 20 + [True] * 80)  # 20 broken, none fixed
    result = mcnemar_delta(base, cand, 0.95)
    assert result.gain == pytest.approx(-0.2)
    assert result.low == pytest.approx(-0.2)  # every discordant pair went the wrong way
    theta_high = scipy_stats.beta.ppf(0.95, 1, 20)
    assert result.high == pytest.approx(0.2 * (2 * theta_high - 1))


def test_paired_bootstrap_agrees_with_scipy_bootstrap() -> None:
    rng = np.random.default_rng(7)
    base_scores = rng.uniform(0, 1, 200)
    cand_scores = base_scores - 0.05 + rng.normal(0, 0.1, 200)
    ratio = Ratio(lambda o: o.scores["f1"])
    ours = paired_delta(
        [Outcome("", {"f1": s}) for s in base_scores],
        [Outcome("", {"f1": s}) for s in cand_scores],
        ratio,
        confidence=0.95,
    )
    theirs = scipy_stats.bootstrap(
        (cand_scores, base_scores),
        lambda c, b: np.mean(c) - np.mean(b),
        paired=True,
        confidence_level=0.90,  # a two-sided 90% interval has one-sided 95% ends
        method="percentile",
        random_state=0,
    ).confidence_interval
    assert ours.method == "paired_bootstrap"
    assert ours.gain == pytest.approx(np.mean(cand_scores) - np.mean(base_scores))
    assert ours.low == pytest.approx(theirs.low, abs=0.004)
    assert ours.high == pytest.approx(theirs.high, abs=0.004)


def samples(base: list[bool], cand: list[bool]) -> PairedSamples:
    return PairedSamples([f"c{i}" for i in range(len(base))], outcomes(base), outcomes(cand), ACC)


def decide(gate: object, base: list[bool], cand: list[bool]) -> object:
    kind = "forgetting" if isinstance(gate, ForgettingGate) else "improve"
    capability = CapabilityBase(name="c", **{kind: gate})
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    metric = lambda v: {("c", "exact.acc"): MetricValue("c", "exact.acc", v, v, v, len(base))}  # noqa: E731
    return decide_gates(
        [capability],
        metric(mean(cand)),
        metric(mean(base)),
        set(),
        {("c", "exact.acc"): samples(base, cand)},
    )[0]


def test_forgetting_fails_only_when_the_drop_is_significant() -> None:
    gate = ForgettingGate(metric="exact.acc", max_drop=0.0)
    small = decide(gate, [True] * 10, [True] * 9 + [False])  # one case of ten: could be noise
    assert small.passed and small.details["method"] == "mcnemar_exact"
    assert small.details["flips"] == {"pass_to_fail": ["c9"], "fail_to_pass": []}
    large = decide(gate, [True] * 100, [True] * 80 + [False] * 20)
    assert not large.passed and "(95% sure it worsened by ≥ 0.1" in large.message
    point = decide(
        ForgettingGate(metric="exact.acc", max_drop=0.0, mode="point"),
        [True] * 10,
        [True] * 9 + [False],
    )
    assert not point.passed


def test_underpowered_gates_are_flagged() -> None:
    gate = ForgettingGate(metric="exact.acc", max_drop=0.02)
    few = decide(gate, [True, False] * 5, [True, False] * 5)
    assert (
        few.passed
        and few.details["underpowered"]
        and few.details["minimum_detectable_effect"] > 0.02
    )
    many = decide(ForgettingGate(metric="exact.acc", max_drop=0.2), [True] * 400, [True] * 400)
    assert not many.details["underpowered"]


def test_improve_needs_a_confident_gain() -> None:
    gate = ImproveGate(metric="exact.acc", min_gain=0.1)
    assert decide(gate, [False] * 50, [True] * 25 + [False] * 25).passed  # +0.5, certain
    assert not decide(
        gate, [False] * 10, [True] * 2 + [False] * 8
    ).passed  # +0.2 on 10 cases: not sure
    assert decide(
        ImproveGate(metric="exact.acc", min_gain=0.1, mode="point"),
        [False] * 10,
        [True] * 2 + [False] * 8,
    ).passed
