"""Gate decisions: pure functions from a candidate's and the base's metrics to verdicts.

A gate compares in the direction of "better": for lower-is-better metrics (perplexity) a drop is
an increase. A metric with no value (no cases ran) never passes a gate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from harness.records import GateKind, GateResult, MetricValue

# Floating-point slack so that a drop of exactly `max_drop` (e.g. 0.1 from 0.3 - 0.2) passes.
EPSILON = 1e-9

MetricKey = tuple[str, str]  # (capability, metric)


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


def _relative_gate(
    capability: str,
    kind: GateKind,
    gate: Any,
    value: float | None,
    base: float | None,
    lower_is_better: bool,
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
    if kind == "forgetting":
        passed = -gain <= limit + EPSILON
        message = f"{gate.metric} {'fell' if gain < 0 else 'rose' if gain > 0 else 'held'} {abs(delta):.4g} ({base:.4g} → {value:.4g}); may drop at most {limit:g}"
    else:
        passed = gain >= limit - EPSILON
        message = f"{gate.metric} gained {gain:+.4g} ({base:.4g} → {value:.4g}); must gain at least {limit:g}"
    return GateResult(capability, kind, gate.metric, value, base, delta, limit, passed, message)


def decide_gates(
    capabilities: list[Any],
    candidate: Mapping[MetricKey, MetricValue],
    base: Mapping[MetricKey, MetricValue],
    lower_is_better: set[str],
) -> list[GateResult]:
    """Every gate of every capability, for one candidate against the base."""
    results = []
    for capability in capabilities:
        name = capability.name
        if capability.threshold is not None:
            key = (name, capability.threshold.metric)
            results.append(threshold_gate(name, capability.threshold, _value(candidate, key)))
        relative: tuple[GateKind, ...] = ("forgetting", "improve")
        for kind in relative:
            gate = getattr(capability, kind)
            if gate is not None:
                key = (name, gate.metric)
                lower = gate.metric in lower_is_better
                results.append(
                    _relative_gate(
                        name, kind, gate, _value(candidate, key), _value(base, key), lower
                    )
                )
    return results


def index_metrics(metrics: list[MetricValue]) -> dict[MetricKey, MetricValue]:
    return {(m.capability, m.metric): m for m in metrics}
