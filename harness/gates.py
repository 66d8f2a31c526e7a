"""Gate decisions: pure functions from a candidate's and the base's results to verdicts.

A gate compares in the direction of "better": for lower-is-better metrics (perplexity) a drop is
an increase. A metric with no value (no cases ran) never passes a gate. Forgetting and improve
gates in `mode: confidence` (the default) decide on a paired test over the same cases (exact
McNemar for pass/fail scores, a paired bootstrap otherwise); `mode: point` on point estimates.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from harness.checks import Outcome, Ratio
from harness.records import GateKind, GateResult, MetricValue, ModelRecord
from harness.stats import PairedDelta, paired_delta

GATE_KINDS: tuple[GateKind, ...] = ("threshold", "forgetting", "improve")

Verdict = Literal["passed", "regressed", "error"]


def fail_on_of(config: Mapping[str, Any]) -> frozenset[str]:
    """The gate kinds that failed the build in a run, as its stored config recorded them."""
    return frozenset(config.get("fail_on") or GATE_KINDS)


def verdict_of(
    record: ModelRecord, gates: Iterable[GateResult], fail_on: Iterable[str] = GATE_KINDS
) -> Verdict:
    """A candidate's verdict: error, else regressed if a gate of a failing kind failed.

    The one definition the terminal, the report, history and compare all use, so a gate kind
    made warn-only by --fail-on reads as passed everywhere.
    """
    if record.status == "error":
        return "error"
    kinds = frozenset(fail_on)
    return "regressed" if any(not g.passed and g.kind in kinds for g in gates) else "passed"


# Floating-point slack so that a drop of exactly `max_drop` (e.g. 0.1 from 0.3 - 0.2) passes.
EPSILON = 1e-9

MetricKey = tuple[str, str]  # (capability, metric)


@dataclass(frozen=True)
class PairedSamples:
    """The same cases, scored for the base and the candidate, in the same order."""

    case_ids: list[str]
    base: list[Outcome]
    candidate: list[Outcome]
    ratio: Ratio


def _value(metrics: Mapping[MetricKey, MetricValue], key: MetricKey) -> float | None:
    found = metrics.get(key)
    return None if found is None or math.isnan(found.value) else found.value


def threshold_gate(capability: str, gate: Any, value: float | None) -> GateResult:
    bound, is_min = (gate.min, True) if gate.min is not None else (gate.max, False)
    if value is None:
        return GateResult(
            capability,
            "threshold",
            gate.metric,
            None,
            None,
            None,
            bound,
            False,
            f"{gate.metric} has no value",
        )
    passed = value >= bound - EPSILON if is_min else value <= bound + EPSILON
    relation = ("at least" if is_min else "at most") + f" {bound:g}"
    verb = "is" if passed else "is not"
    message = f"{gate.metric} = {value:.4g} {verb} {relation}"
    return GateResult(
        capability, "threshold", gate.metric, value, None, None, bound, passed, message
    )


def flips(samples: PairedSamples) -> dict[str, list[str]]:
    """Case ids that passed on the base and fail on the candidate, and back."""
    pairs = list(zip(samples.case_ids, samples.base, samples.candidate, strict=True))
    return {
        "pass_to_fail": [i for i, b, c in pairs if b.passed is True and c.passed is False],
        "fail_to_pass": [i for i, b, c in pairs if b.passed is False and c.passed is True],
    }


def _statistics(
    gate: Any, samples: PairedSamples | None, lower: bool, seed: int
) -> PairedDelta | None:
    if samples is None or not samples.case_ids:
        return None
    return paired_delta(
        samples.base,
        samples.candidate,
        samples.ratio,
        lower_is_better=lower,
        confidence=gate.confidence,
        seed=seed,
    )


def _relative_gate(
    capability: str,
    kind: GateKind,
    gate: Any,
    value: float | None,
    base: float | None,
    lower_is_better: bool,
    samples: PairedSamples | None = None,
    seed: int = 0,
) -> GateResult:
    limit = gate.max_drop if kind == "forgetting" else gate.min_gain
    if value is None or base is None:
        missing = "the candidate" if value is None else "the base"
        return GateResult(
            capability,
            kind,
            gate.metric,
            value,
            base,
            None,
            limit,
            False,
            f"{gate.metric} has no value for {missing}",
        )
    delta = value - base
    gain = -delta if lower_is_better else delta  # positive = better than the base
    stats = _statistics(gate, samples, lower_is_better, seed)
    confident = gate.mode == "confidence" and stats is not None
    if kind == "forgetting":
        drop_bound = (
            -stats.high if confident and stats else -gain
        )  # the smallest drop the data allow
        passed = drop_bound <= limit + EPSILON
        moved = "worsened" if gain < 0 else "improved" if gain > 0 else "held"
        message = f"{gate.metric} {moved} by {abs(delta):.4g} ({base:.4g} → {value:.4g}); may worsen by at most {limit:g}"
    else:
        gain_bound = stats.low if confident and stats else gain
        passed = gain_bound >= limit - EPSILON
        message = f"{gate.metric} gained {gain:+.4g} ({base:.4g} → {value:.4g}); must gain at least {limit:g}"
    details = _details(gate, kind, limit, stats, samples) | {"lower_is_better": lower_is_better}
    if confident and stats is not None:
        message += _confidence_note(kind, gate, stats, passed)
    return GateResult(
        capability, kind, gate.metric, value, base, delta, limit, passed, message, details
    )


def _confidence_note(kind: str, gate: Any, stats: PairedDelta, passed: bool) -> str:
    """The paired test behind the verdict, briefly: its one-sided bound and p-value."""
    method = "McNemar" if stats.method == "mcnemar_exact" else "paired bootstrap"
    p = f", p={stats.p_value:.2g}" if stats.p_value is not None else ""
    if kind == "forgetting":
        bound = f"worsened by ≥ {max(-stats.high, 0.0) + 0.0:.3g}"
    else:
        bound = f"gained ≥ {stats.low + 0.0:.3g}"
    return f" ({gate.confidence:.0%} sure it {bound}; {method}{p})"


def gate_limit(kind: str, gate: Any) -> float:
    return float(gate.max_drop if kind == "forgetting" else gate.min_gain)


def _details(
    gate: Any, kind: str, limit: float, stats: PairedDelta | None, samples: PairedSamples | None
) -> dict[str, Any]:
    details: dict[str, Any] = {"mode": gate.mode, "confidence": gate.confidence}
    if stats is not None:
        details |= {
            "method": stats.method,
            "p_value": stats.p_value,
            "gain_bounds": [stats.low, stats.high],
            "n": stats.n,
            "minimum_detectable_effect": stats.mde,
            # A forgetting gate that could not see a drop of its own size cannot be trusted.
            "underpowered": kind == "forgetting" and stats.mde > limit,
        }
    if samples is not None:
        details["flips"] = flips(samples)
    return details


def decide_gates(
    capabilities: list[Any],
    candidate: Mapping[MetricKey, MetricValue],
    base: Mapping[MetricKey, MetricValue],
    lower_is_better: set[str],
    samples: Mapping[MetricKey, PairedSamples] | None = None,
    seed: int = 0,
) -> list[GateResult]:
    """Every gate of every capability, for one candidate against the base."""
    samples = samples or {}
    results = []
    for capability in capabilities:
        name = capability.name
        if capability.threshold is not None:
            key = (name, capability.threshold.metric)
            results.append(threshold_gate(name, capability.threshold, _value(candidate, key)))
        for kind in GATE_KINDS[1:]:  # the relative ones
            gate = getattr(capability, kind)
            if gate is not None:
                key = (name, gate.metric)
                lower = gate.metric in lower_is_better
                results.append(
                    _relative_gate(
                        name,
                        kind,
                        gate,
                        _value(candidate, key),
                        _value(base, key),
                        lower,
                        samples.get(key),
                        seed,
                    )
                )
    return results


def index_metrics(metrics: list[MetricValue]) -> dict[MetricKey, MetricValue]:
    return {(m.capability, m.metric): m for m in metrics}
