"""Gate verdicts as short text, shared by the terminal, JUnit, Markdown, annotations and report."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from harness.core.records import GateResult, MetricValue
from harness.evaluation import GATE_KINDS, cases_needed_text, gate_status, p_value_text


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
    """The uncertainty behind a verdict: the one-sided bounds at the gate's confidence, else the
    value's 95% interval."""
    confidence = gate.details.get("confidence", 0.95)
    for key, what, sign in (("gain_bounds", "gain", "+"), ("value_bounds", "value", "")):
        bounds = gate.details.get(key)
        if bounds and None not in bounds:
            low, high = (f"{b:{sign}.3f}" for b in bounds)
            return f"{what} in [{low}, {high}] ({confidence:.0%} one-sided bounds)"
    if metric is not None:
        return f"value 95% CI [{metric.ci_low:.3f}, {metric.ci_high:.3f}]"
    return "no interval"


def limit_text(gate: GateResult) -> str:
    if gate.kind == "threshold":
        return f"limit {gate.limit:g}"
    return f"max drop {gate.limit:g}" if gate.kind == "forgetting" else f"min gain {gate.limit:g}"


def p_text(gate: GateResult) -> str:
    """The p-value with the hypothesis it tests, e.g. 'p=0.003 against drop ≥ 0.1'."""
    p, hypothesis = gate.details.get("p_value"), gate.details.get("hypothesis")
    if p is None:
        return ""
    return f"{p_value_text(p)} against {hypothesis}" if hypothesis else p_value_text(p)


def outcome_text(gate: GateResult) -> str:
    """Why a gate came out as it did, in a few words (no values)."""
    details = gate.details
    if gate.outcome == "inconclusive":
        if "n" not in details:
            return "inconclusive: nothing to test it on"
        return "inconclusive: " + cases_needed_text(details["n"], details.get("cases_needed"))
    if gate.outcome == "fail" and "significant" in details:
        if details["significant"]:
            return f"significant, {p_text(gate)}"
        return f"not significant at n={details['n']}, {p_text(gate)}"
    if gate.outcome == "pass" and details.get("mode") == "confidence" and "p_value" in details:
        return f"{details.get('confidence', 0.95):.0%} sure, {p_text(gate)}"
    return ""


def status_cell(gate: GateResult, fail_on: Iterable[str]) -> str:
    """A gate's verdict in a table cell: pass / FAIL / inconclusive / warn, and the test."""
    status = gate_status(gate, fail_on)
    word = {"pass": "pass", "fail": "FAIL", "inconclusive": "inconclusive", "warn": "warn"}[status]
    if status == "warn":
        word += f" ({gate.outcome}, warn-only)"
    if gate.outcome == "inconclusive" and gate.details.get("cases_needed"):
        return f"{word}: ~{gate.details['cases_needed']} cases needed (n={gate.details['n']})"
    if gate.outcome == "fail" and "significant" in gate.details:
        significant = "significant" if gate.details["significant"] else "not significant"
        return f"{word}, {significant} ({p_text(gate)})"
    p = p_text(gate)
    return f"{word} ({p})" if p else word


def flip_lists(gate: GateResult) -> tuple[list[str], list[str], str]:
    """(cases that got worse, cases that got better, what was compared) on the gated metric.

    Gates stored before flips were counted on the gated metric have pass/fail lists.
    """
    flips = gate.details.get("flips") or {}
    worse = list(flips.get("worse", flips.get("pass_to_fail")) or [])
    better = list(flips.get("better", flips.get("fail_to_pass")) or [])
    basis = flips.get("basis", "passed")
    return worse, better, basis


def flipped(gate: GateResult, shown: int = 10) -> str:
    """Cases that got worse and better on the gated metric, abridged."""
    worse, better, basis = flip_lists(gate)
    pass_fail = str(gate.details.get("method", "")).startswith("exact")
    if basis == "metric" and pass_fail:
        labels = (f"pass→fail on {gate.metric}", f"fail→pass on {gate.metric}")
    elif basis == "metric":
        labels = (f"worse on {gate.metric}", f"better on {gate.metric}")
    else:  # a corpus metric: each case's own pass or fail
        labels = ("case pass→fail", "case fail→pass")
    parts = []
    for ids, label in ((worse, labels[0]), (better, labels[1])):
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
    """Lines of evidence for a verdict: values, delta, interval, test, flips, missing cases."""
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
        lines.append(f"test: {gate.details.get('method')} {p_text(gate)}")
    if text := outcome_text(gate):
        lines.append(f"outcome: {gate.outcome}: {text}")
    if flips := flipped(gate, shown=50):
        lines.append(f"flipped cases: {flips}")
    if gate.details.get("baseline_missing"):
        missing = gate.details["baseline_missing"]
        lines.append(f"cases missing in the baseline ({len(missing)}): {', '.join(missing[:50])}")
    return lines


def short_reason(gate: GateResult) -> str:
    """A gate in a few words, e.g. 'arithmetic exact.acc -0.5 (limit -0.1; significant, p=0.02
    against drop ≤ 0.1)'."""
    where = f"{gate.capability} {gate.metric}"
    if gate.value is None or (gate.kind != "threshold" and gate.delta is None):
        return f"{where}: no value"
    why = outcome_text(gate)
    why = f"; {why}" if why else ""
    if gate.kind == "threshold":
        return f"{where} {gate.value:.3g} (limit {gate.limit:g}{why})"
    worse = "+" if gate.details.get("lower_is_better") else "-"  # which way is worse
    better = "-" if worse == "+" else "+"
    needed = f"{worse}{gate.limit:g}" if gate.kind == "forgetting" else f"{better}{gate.limit:g}"
    return f"{where} {gate.delta:+.3g} (limit {needed}{why})"


def candidate_warnings(candidate: Any, *, inconclusive: bool = True) -> list[str]:
    """Everything to warn about one candidate (a ModelResult): its inconclusive gates (unless
    `inconclusive` is false: said beside its verdict already), gates --fail-on made warn-only,
    and its own warnings. Each line names the candidate."""
    name = candidate.record.name
    undecided = candidate.inconclusive if inconclusive else []
    lines = [f"{name} · {g.capability} · {g.metric}: {outcome_text(g)}" for g in undecided]
    lines += [f"{name} (warn-only) · {short_reason(g)}" for g in candidate.warned]
    return lines + [f"{name}: {w}" for w in candidate.warnings]


def plain_summary(
    verdict: str, gates: Sequence[GateResult], fail_on: Iterable[str], error: str | None
) -> str:
    """Why a candidate got its verdict, in one plain line (the report's lead)."""
    if verdict == "error":
        return error or "failed to run"
    statuses = [(g, gate_status(g, fail_on)) for g in gates]
    failed = [g for g, s in statuses if s == "fail"]
    undecided = [g for g, s in statuses if s == "inconclusive"]
    warned = [g for g, s in statuses if s == "warn"]
    if failed:
        line = "regressed on " + ", ".join(_change(g) for g in failed)
    elif undecided:
        line = "too few cases to tell: " + ", ".join(
            f"{g.capability} {g.metric} ({_needed(g)})" for g in undecided
        )
    elif not gates:
        line = "no gates to hold"
    else:
        sure = all(g.details.get("mode", "confidence") == "confidence" for g in gates)
        held = "its gate held" if len(gates) == 1 else f"all {len(gates)} gates held"
        line = held + (" with confidence" if sure else " (point estimates)")
    if warned:
        line += "; warn-only: " + ", ".join(_change(g) for g in warned)
    return line


def _change(gate: GateResult) -> str:
    """'known_facts qa.em −1 (limit −0.1)' for a relative gate, 'number.acc 0.83 (min 0.9)'."""
    where = f"{gate.capability} {gate.metric}"
    if gate.value is None or (gate.kind != "threshold" and gate.delta is None):
        return f"{where} (no value)"
    if gate.kind == "threshold":
        return f"{where} {gate.value:.3g} ({gate.details.get('bound', 'limit')} {gate.limit:g})"
    worse = "+" if gate.details.get("lower_is_better") else "-"
    better = "-" if worse == "+" else "+"
    needed = f"{worse}{gate.limit:g}" if gate.kind == "forgetting" else f"{better}{gate.limit:g}"
    return f"{where} {gate.delta:+.3g} (limit {needed})"


def _needed(gate: GateResult) -> str:
    needed, n = gate.details.get("cases_needed"), gate.details.get("n")
    if n is None:
        return "nothing to test it on"
    return f"~{needed} cases needed, {n} given" if needed else f"{n} cases, more would not tell"


# ------------------------------------------------------------------- checkpoints while training

GATE_MARK = {"pass": "✓", "fail": "✗", "inconclusive": "?"}


def checkpoint_record(info: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """A trained candidate's checkpoint evaluations (`info["training"]["checkpoints"]`: settings,
    points, selected_step, selection, stopped_at, stop_reason), when it evaluated any."""
    training = info.get("training")
    record = training.get("checkpoints") if isinstance(training, Mapping) else None
    if not isinstance(record, Mapping) or not record.get("points"):
        return None
    return record


def selection_text(record: Mapping[str, Any]) -> str:
    """Which checkpoint became the candidate and why, e.g. 'selected step 50 of 150
    (best-passing)', or 'selected step 150 of 150: no checkpoint passed every gate; ...'."""
    # the steps the trainer planned; records without them: the last step evaluated
    last = record.get("total_steps") or record["points"][-1].get("step")
    selected, how = record.get("selected_step"), str(record.get("selection") or "")
    if selected is None:
        return "no checkpoint selected" + (f": {how}" if how else "")
    text = f"selected step {selected} of {last}"
    if how in ("last", "best-passing"):
        return f"{text} ({how})"
    return f"{text}: {how}" if how else text


def stop_text(record: Mapping[str, Any]) -> str:
    """'stopped early at step 20: a forgetting gate failed at steps 10 and 20', or ''."""
    stopped = record.get("stopped_at")
    if stopped is None:
        return ""
    reason = record.get("stop_reason")
    return f"stopped early at step {stopped}" + (f": {reason}" if reason else "")


def checkpoint_verdict(point: Mapping[str, Any]) -> str:
    """One checkpoint in a word: passed (every gate), forgot (a forgetting gate failed), not
    passing (another gate failed or could not tell), or no gates."""
    gates = point.get("gates") or []
    if not gates:
        return "no gates"
    if all(g.get("outcome") == "pass" for g in gates):
        return "passed"
    if any(g.get("kind") == "forgetting" and g.get("outcome") == "fail" for g in gates):
        return "forgot"
    return "not passing"
