"""Gate decisions: pure functions from a candidate's and the reference's cases to verdicts.

Every gate (threshold, forgetting, improve) ends in one of three outcomes (SPEC.md, Verdicts):

- **fail**: the value measured on the suite's cases is on the wrong side of the limit. The test
  says whether that is significant ("significant, p=0.02" or "not significant at n=12"), but a
  measured regression is never given the benefit of the doubt.
- **pass**: the one-sided bound at `confidence` is on the right side of the limit.
- **inconclusive**: the measured value is on the right side but its bound is not: the suite is
  too small to tell. The gate says how many cases would be needed.

`mode: point` keeps two outcomes (pass or fail on the point estimate). A gate compares in the
direction of "better": for lower-is-better metrics (perplexity) a drop is a rise. A metric with no
value (no cases ran) never passes. The evidence (harness.evaluation._evidence) is computed on the gated
metric and its own scale; flipped cases are counted on it too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from harness.core.records import GateKind, GateOutcome, GateResult, MetricValue, ModelRecord
from harness.core.scores import Corpus, Outcome, Ratio
from harness.evaluation._evidence import (
    Evidence,
    EvidenceCache,
    case_values,
    evidence_key,
    relative_evidence,
    remembered,
    threshold_evidence,
)

GATE_KINDS: tuple[GateKind, ...] = ("threshold", "forgetting", "improve")
# A word of --fail-on beside the gate kinds: inconclusive gates fail the build too (--strict).
STRICT = "inconclusive"

Verdict = Literal["passed", "regressed", "inconclusive", "error"]

# Floating-point slack so that a drop of exactly `max_drop` (e.g. 0.1 from 0.3 - 0.2) holds.
EPSILON = 1e-9

MetricKey = tuple[str, str]  # (capability, metric)


def fail_on_of(config: Mapping[str, Any]) -> frozenset[str]:
    """What failed the build in a run (gate kinds, and STRICT), as its stored config says."""
    return frozenset(config.get("fail_on") or GATE_KINDS)


def gate_status(gate: GateResult, fail_on: Iterable[str] = GATE_KINDS) -> str:
    """What a gate means for the build: pass, fail, inconclusive, or warn (a kind --fail-on
    leaves out); under --strict an inconclusive gate fails."""
    kinds = frozenset(fail_on)
    if gate.outcome == "pass":
        return "pass"
    if gate.kind not in kinds:
        return "warn"
    if gate.outcome == "fail" or STRICT in kinds:
        return "fail"
    return "inconclusive"


def verdict_of(
    record: ModelRecord, gates: Iterable[GateResult], fail_on: Iterable[str] = GATE_KINDS
) -> Verdict:
    """A candidate's verdict: error; regressed if a deciding gate failed; inconclusive if one
    could not tell; else passed.

    The one definition the terminal, the report, history and compare all use, so a gate kind
    made warn-only by --fail-on reads as passed everywhere.
    """
    if record.status == "error":
        return "error"
    statuses = {gate_status(g, fail_on) for g in gates}
    if "fail" in statuses:
        return "regressed"
    return "inconclusive" if "inconclusive" in statuses else "passed"


@dataclass(frozen=True)
class MetricCases:
    """One model's cases of one metric, in order, with how the metric aggregates them."""

    case_ids: list[str]
    outcomes: list[Outcome]
    ratio: Ratio
    value_range: tuple[float, float] | None = None  # per-case range, None when unbounded


@dataclass(frozen=True)
class PairedSamples:
    """The same cases, scored for the reference and the candidate, in the same order."""

    case_ids: list[str]
    base: list[Outcome]
    candidate: list[Outcome]
    ratio: Ratio
    value_range: tuple[float, float] | None = None


@dataclass(frozen=True)
class GateInputs:
    """Everything the gates of one candidate are decided from."""

    candidate: Mapping[MetricKey, MetricValue]
    reference: Mapping[MetricKey, MetricValue]
    lower_is_better: frozenset[str] | set[str]
    cases: Mapping[MetricKey, MetricCases]  # the candidate's own cases (threshold gates)
    paired: Mapping[MetricKey, PairedSamples]  # paired with the reference (relative gates)
    seed: int = 0
    evidence_cache: EvidenceCache | None = None  # evidence computed by an earlier run


def _value(metrics: Mapping[MetricKey, MetricValue], key: MetricKey) -> float | None:
    found = metrics.get(key)
    return None if found is None or math.isnan(found.value) else found.value


# ---------------------------------------------------------------- flips


def flips(samples: PairedSamples, lower_is_better: bool) -> dict[str, Any]:
    """Cases that got worse and better on the gated metric (pass -> fail for pass/fail scores).

    A corpus metric (BLEU, MCC) has no per-case value: its flips are the cases whose own
    outcome (`passed`) changed, and `basis` says so.
    """
    base: list[float | None]
    cand: list[float | None]
    if isinstance(samples.ratio, Corpus):
        base = [None if o.passed is None else float(o.passed) for o in samples.base]
        cand = [None if o.passed is None else float(o.passed) for o in samples.candidate]
        basis = "passed"
    else:
        base = case_values(samples.base, samples.ratio)
        cand = case_values(samples.candidate, samples.ratio)
        basis = "metric"
    worse: list[str] = []
    better: list[str] = []
    for case_id, b, c in zip(samples.case_ids, base, cand, strict=True):
        if b is None or c is None or b == c:
            continue
        improved = (float(c) < float(b)) if lower_is_better else (float(c) > float(b))
        (better if improved else worse).append(case_id)
    return {"basis": basis, "worse": worse, "better": better}


# ---------------------------------------------------------------- the three gate kinds


def threshold_gate(
    capability: str,
    gate: Any,
    value: float | None,
    cases: MetricCases | None = None,
    seed: int = 0,
    cache: EvidenceCache | None = None,
) -> GateResult:
    bound, is_min = (gate.min, True) if gate.min is not None else (gate.max, False)
    if value is None:
        message = f"{gate.metric} has no value"
        return GateResult(
            capability, "threshold", gate.metric, None, None, None, bound, "fail", message
        )
    on_right_side = value >= bound - EPSILON if is_min else value <= bound + EPSILON
    relation = ("at least" if is_min else "at most") + f" {bound:g}"
    evidence = None
    if gate.mode == "confidence" and cases is not None and cases.outcomes:
        settings = {
            "bound": bound, "is_min": is_min, "confidence": gate.confidence, "seed": seed,
            "declared_range": cases.value_range,
        }  # fmt: skip
        key = evidence_key(
            "threshold", [cases.outcomes], cases.ratio, metric=gate.metric, **settings
        )
        evidence = remembered(
            cache, key, lambda: threshold_evidence(cases.outcomes, cases.ratio, **settings)
        )
    outcome = _outcome(gate.mode, on_right_side, evidence)
    verb = "is" if on_right_side else "is not"
    message = f"{gate.metric} = {value:.4g} {verb} {relation}"
    details: dict[str, Any] = {
        "mode": gate.mode,
        "confidence": gate.confidence,
        "bound": "min" if is_min else "max",
    }
    if evidence is not None:
        sign = 1.0 if is_min else -1.0  # back from θ to the metric's own values
        value_bounds = sorted([sign * evidence.low, sign * evidence.high])
        details |= _evidence_details(evidence, "value", relation_words(is_min, bound))
        details["value_bounds"] = value_bounds
        message += _note(outcome, evidence, gate.confidence, details)
    elif gate.mode == "confidence" and outcome == "inconclusive":
        message += " — inconclusive: no cases to test it on"
    return GateResult(
        capability, "threshold", gate.metric, value, None, None, bound, outcome, message, details
    )


def relation_words(is_min: bool, bound: float) -> tuple[str, str]:
    """The null hypotheses of a threshold's two tests: (against a pass, against a fail)."""
    if is_min:
        return (f"value < {bound:g}", f"value ≥ {bound:g}")
    return (f"value > {bound:g}", f"value ≤ {bound:g}")


def relative_gate(
    capability: str,
    kind: GateKind,
    gate: Any,
    value: float | None,
    base: float | None,
    lower_is_better: bool,
    samples: PairedSamples | None = None,
    seed: int = 0,
    cache: EvidenceCache | None = None,
) -> GateResult:
    limit = gate.max_drop if kind == "forgetting" else gate.min_gain
    if value is None or base is None:
        missing = "the candidate" if value is None else "the reference"
        message = f"{gate.metric} has no value for {missing}"
        return GateResult(capability, kind, gate.metric, value, base, None, limit, "fail", message)
    delta = value - base
    gain = -delta if lower_is_better else delta  # positive = better than the reference
    needed_gain = -limit if kind == "forgetting" else limit
    evidence = None
    if gate.mode == "confidence" and samples is not None and samples.case_ids:
        paired = samples
        settings = {
            "lower_is_better": lower_is_better, "limit": needed_gain,
            "confidence": gate.confidence, "seed": seed, "declared_range": paired.value_range,
        }  # fmt: skip
        parts = [paired.base, paired.candidate]
        key = evidence_key("relative", parts, paired.ratio, metric=gate.metric, **settings)
        evidence = remembered(
            cache,
            key,
            lambda: relative_evidence(paired.base, paired.candidate, paired.ratio, **settings),
        )
        gain = evidence.estimate  # measured on the paired cases the test used
    outcome = _outcome(gate.mode, gain >= needed_gain - EPSILON, evidence)
    message = _relative_message(kind, gate, delta, gain, base, value, limit)
    details: dict[str, Any] = {
        "mode": gate.mode,
        "confidence": gate.confidence,
        "lower_is_better": lower_is_better,
    }
    if evidence is not None:
        details |= _evidence_details(evidence, "gain", _relative_hypotheses(kind, limit))
        details["gain_bounds"] = [evidence.low, evidence.high]
        message += _note(outcome, evidence, gate.confidence, details)
    elif gate.mode == "confidence" and outcome == "inconclusive":
        message += " — inconclusive: no paired cases to test it on"
    if samples is not None:
        details["flips"] = flips(samples, lower_is_better)
    return GateResult(
        capability, kind, gate.metric, value, base, delta, limit, outcome, message, details
    )


def _relative_message(
    kind: str, gate: Any, delta: float, gain: float, base: float, value: float, limit: float
) -> str:
    if kind == "forgetting":
        moved = "worsened" if gain < 0 else "improved" if gain > 0 else "held"
        return (
            f"{gate.metric} {moved} by {abs(delta):.4g} ({base:.4g} → {value:.4g}); "
            f"may worsen by at most {limit:g}"
        )
    return (
        f"{gate.metric} gained {gain:+.4g} ({base:.4g} → {value:.4g}); must gain at least {limit:g}"
    )


def _relative_hypotheses(kind: str, limit: float) -> tuple[str, str]:
    """The null hypotheses of a relative gate's two tests: (against a pass, against a fail)."""
    if kind == "forgetting":
        return (f"drop ≥ {limit:g}", f"drop ≤ {limit:g}")
    return (f"gain ≤ {limit:g}", f"gain ≥ {limit:g}")


def _outcome(mode: str, on_right_side: bool, evidence: Evidence | None) -> GateOutcome:
    if not on_right_side:
        return "fail"
    if mode == "point":
        return "pass"
    return "pass" if evidence is not None and evidence.confident_right else "inconclusive"


def _evidence_details(
    evidence: Evidence, scale: str, hypotheses: tuple[str, str]
) -> dict[str, Any]:
    return {
        "method": evidence.method,
        "n": evidence.n,
        "estimate": evidence.estimate,
        "scale": scale,  # what `estimate` and the bounds measure: the gain, or the value
        "p_pass": evidence.p_right,
        "p_fail": evidence.p_wrong,
        "h_pass": hypotheses[0],  # the null hypothesis p_pass tests
        "h_fail": hypotheses[1],
        "significant": evidence.confident_wrong,
        "cases_needed": evidence.cases_needed,
        "floor": evidence.floor,
    }


def _note(outcome: str, evidence: Evidence, confidence: float, details: dict[str, Any]) -> str:
    """The test behind the outcome in words, with the hypothesis its p-value tests."""
    method = {
        "exact_unconditional": "exact paired test",
        "exact_binomial": "exact binomial test",
        "t": "t test",
        "bootstrap": "paired bootstrap" if details["scale"] == "gain" else "bootstrap",
    }[evidence.method]
    if outcome == "fail":
        p = evidence.p_wrong
        details["p_value"], details["hypothesis"] = p, details["h_fail"]
        if evidence.confident_wrong:
            return f" — significant ({method}, {p_value_text(p)} against {details['h_fail']})"
        return f" — not significant at n={evidence.n} ({method}, {p_value_text(p)} against {details['h_fail']})"
    p = evidence.p_right
    details["p_value"], details["hypothesis"] = p, details["h_pass"]
    test = f"({method}, {p_value_text(p)} against {details['h_pass']})"
    if outcome == "pass":
        return f" — {confidence:.0%} sure {test}"
    return f" — inconclusive: {cases_needed_text(evidence.n, evidence.cases_needed)} {test}"


def p_value_text(p: float) -> str:
    """'p=0.03', or 'p<0.001' (an exact zero would read as certainty)."""
    return "p<0.001" if p < 0.001 else f"p={p:.2g}"


def cases_needed_text(n: int, needed: int | None) -> str:
    """E.g. 'about 29 cases would tell (the suite has 12)'."""
    if needed is None:
        return f"{n} cases cannot tell, and more cases like them would not either"
    return f"about {needed} cases would tell (the suite has {n})"


# ---------------------------------------------------------------- a candidate's gates


def decide_gates(
    capabilities: Sequence[Any], inputs: GateInputs, *, joint: bool = False
) -> list[GateResult]:
    """Every gate of every capability, for one candidate against the reference.

    `joint`: the candidate's passes must hold together (Holm's adjustment of their p-values);
    a pass that does not survive it becomes inconclusive.
    """
    results = []
    for capability in capabilities:
        name = capability.name
        if capability.threshold is not None:
            key = (name, capability.threshold.metric)
            results.append(
                threshold_gate(
                    name,
                    capability.threshold,
                    _value(inputs.candidate, key),
                    inputs.cases.get(key),
                    inputs.seed,
                    inputs.evidence_cache,
                )
            )
        for kind in GATE_KINDS[1:]:  # the relative ones
            gate = getattr(capability, kind)
            if gate is not None:
                key = (name, gate.metric)
                results.append(
                    relative_gate(
                        name,
                        kind,
                        gate,
                        _value(inputs.candidate, key),
                        _value(inputs.reference, key),
                        gate.metric in inputs.lower_is_better,
                        inputs.paired.get(key),
                        inputs.seed,
                        inputs.evidence_cache,
                    )
                )
    if inputs.evidence_cache is not None:
        inputs.evidence_cache.flush()
    return holm(results) if joint else results


def holm(gates: list[GateResult]) -> list[GateResult]:
    """Holm's step-down adjustment of the passes' p-values: the passes that still hold at their
    gate's confidence hold jointly; the others become inconclusive."""
    passes = sorted(
        (i for i, g in enumerate(gates) if g.outcome == "pass" and "p_pass" in g.details),
        key=lambda i: gates[i].details["p_pass"],
    )
    adjusted = list(gates)
    for rank, index in enumerate(passes):
        gate = gates[index]
        alpha = 1 - float(gate.details["confidence"])
        if gate.details["p_pass"] <= alpha / (len(passes) - rank):
            adjusted[index] = replace(gate, details=gate.details | {"holm": "held"})
            continue
        for later in passes[rank:]:  # step-down: once one fails, every larger p-value does
            late = gates[later]
            note = f" — not jointly with the candidate's other gates (Holm, {len(passes)} passes)"
            adjusted[later] = replace(
                late,
                outcome="inconclusive",
                message=late.message + note,
                details=late.details | {"holm": "not held"},
            )
        break
    return adjusted


def unmeasured_gates(gates: Sequence[GateResult]) -> list[str]:
    """Gates whose metric has no value (nothing was measured): never a verdict."""
    return [
        f"{g.capability} {g.metric} has no value"
        + ("" if g.value is not None else " for the candidate")
        for g in gates
        if g.value is None or (g.kind != "threshold" and g.base_value is None)
    ]


def index_metrics(metrics: Sequence[MetricValue]) -> dict[MetricKey, MetricValue]:
    return {(m.capability, m.metric): m for m in metrics}
