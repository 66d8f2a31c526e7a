"""Gate verdicts as short text, shared by the JUnit, Markdown and GitHub-annotation outputs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from harness.gates import GATE_KINDS
from harness.records import GateResult, MetricValue


def gate_name(capability: str, kind: str, metric: str) -> str:
    """A gate's stable name, e.g. 'arithmetic · forgetting · exact.acc' (JUnit test names)."""
    return f"{capability} · {kind} · {metric}"


def gate_keys(capabilities: Iterable[Any]) -> list[tuple[str, str, str]]:
    """Every gate a suite defines, as (capability, kind, metric), in decide_gates' order."""
    keys: list[tuple[str, str, str]] = []
    for capability in capabilities:
        for kind in GATE_KINDS:
            gate = getattr(capability, kind, None)
            if gate is not None:
                keys.append((capability.name, kind, gate.metric))
    return keys


def number(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def interval(gate: GateResult, metric: MetricValue | None) -> str:
    """The uncertainty behind a verdict: the paired gain bounds, else the value's interval."""
    bounds = gate.details.get("gain_bounds")
    if bounds and None not in bounds:
        confidence = gate.details.get("confidence", 0.95)
        return f"gain in [{bounds[0]:+.3f}, {bounds[1]:+.3f}] ({confidence:.0%} one-sided bounds)"
    if metric is not None:
        return f"value 95% CI [{metric.ci_low:.3f}, {metric.ci_high:.3f}]"
    return "no interval"


def limit_text(gate: GateResult) -> str:
    if gate.kind == "threshold":
        return f"limit {gate.limit:g}"
    return f"max drop {gate.limit:g}" if gate.kind == "forgetting" else f"min gain {gate.limit:g}"


def flipped(gate: GateResult, shown: int = 10) -> str:
    """Cases that passed on the reference and fail on the candidate (and back), abridged."""
    flips = gate.details.get("flips") or {}
    parts = []
    for key, label in (("pass_to_fail", "pass→fail"), ("fail_to_pass", "fail→pass")):
        ids = list(flips.get(key) or [])
        if ids:
            more = f" … (+{len(ids) - shown})" if len(ids) > shown else ""
            parts.append(f"{label} ({len(ids)}): {', '.join(ids[:shown])}{more}")
    return "; ".join(parts)


def reference_text(gate: GateResult) -> str:
    """What a relative gate compared with: the base, or a baseline run's model."""
    against = gate.details.get("against")
    if against:
        return f"{against['model']} of run {against['run_id']}"
    return "base"


def gate_evidence(gate: GateResult, metric: MetricValue | None) -> list[str]:
    """Lines of evidence for a verdict: values, delta, interval, p-value, flips, missing cases."""
    lines = [gate.message, f"metric: {gate.capability} {gate.metric}"]
    if gate.kind == "threshold":
        lines.append(f"value: {number(gate.value)} ({limit_text(gate)})")
    else:
        lines.append(
            f"value: {number(gate.value)} vs {number(gate.base_value)} ({reference_text(gate)}); "
            f"delta {number(gate.delta, signed=True)} ({limit_text(gate)})"
        )
    lines.append(f"interval: {interval(gate, metric)}")
    if gate.details.get("p_value") is not None:
        lines.append(f"test: {gate.details.get('method')} p={gate.details['p_value']:.3g}")
    if flips := flipped(gate, shown=50):
        lines.append(f"flipped cases: {flips}")
    if gate.details.get("baseline_missing"):
        missing = gate.details["baseline_missing"]
        lines.append(f"cases missing in the baseline ({len(missing)}): {', '.join(missing[:50])}")
    return lines


def short_reason(gate: GateResult) -> str:
    """A failed gate in a few words, e.g. 'arithmetic exact.acc -0.17 (limit -0.05)'."""
    where = f"{gate.capability} {gate.metric}"
    if gate.value is None or (gate.kind != "threshold" and gate.delta is None):
        return f"{where}: no value"
    if gate.kind == "threshold":
        return f"{where} {gate.value:.3g} (limit {gate.limit:g})"
    worse = "+" if gate.details.get("lower_is_better") else "-"  # which way is worse
    better = "-" if worse == "+" else "+"
    needed = f"{worse}{gate.limit:g}" if gate.kind == "forgetting" else f"{better}{gate.limit:g}"
    return f"{where} {gate.delta:+.3g} (limit {needed})"
