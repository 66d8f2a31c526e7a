"""JUnit XML (`--junit FILE`): one testcase per candidate x gate, for any CI's test view.

A failed gate is a <failure> carrying the metric, delta, interval and flipped cases; a candidate
that failed to train or evaluate gives an <error> on each of its gates; an inconclusive gate is
<skipped> with the cases it would need (a <failure> under --strict); a gate whose kind --fail-on
excludes passes, with the warning in <system-out>. Every testcase carries its outcome as a
property. One <testsuite> per candidate.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from harness.core.text import xml_text
from harness.evaluation import ModelResult, RunResult, gate_status, index_metrics
from harness.outputs._text import (
    candidate_warnings,
    gate_evidence,
    gate_keys,
    gate_name,
    short_reason,
)


def junit_xml(result: RunResult, capabilities: Sequence[object]) -> ET.ElementTree:
    """The run as a JUnit document; `capabilities` name the gates of candidates that failed."""
    root = ET.Element("testsuites", name=f"harness {result.suite}")
    defined = gate_keys(capabilities)
    for candidate in result.candidates:
        root.append(_testsuite(result, candidate, defined))
    for attribute in ("tests", "failures", "errors", "skipped"):
        root.set(attribute, str(sum(int(s.get(attribute, "0")) for s in root)))
    _sanitise(root)
    ET.indent(root)
    return ET.ElementTree(root)


def _sanitise(root: ET.Element) -> None:
    """Show characters XML cannot hold (NUL, ESC, ...) as escapes, so any JUnit parser reads the
    file; ElementTree itself escapes only markup."""
    for element in root.iter():
        for name, value in element.attrib.items():
            element.set(name, xml_text(value))
        if element.text:
            element.text = xml_text(element.text)


def write_junit(result: RunResult, capabilities: Sequence[object], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    junit_xml(result, capabilities).write(path, encoding="utf-8", xml_declaration=True)


def _testsuite(
    result: RunResult, candidate: ModelResult, defined: list[tuple[str, str, str]]
) -> ET.Element:
    name = candidate.record.name
    suite = ET.Element("testsuite", name=f"{result.suite} · {name}")
    suite.set("timestamp", datetime.now(UTC).replace(microsecond=0).isoformat())
    properties = ET.SubElement(suite, "properties")
    for key, value in (("run_id", result.run_id), ("reference", candidate.record.reference)):
        ET.SubElement(properties, "property", name=key, value=value)
    classname = f"harness.{result.suite}.{name}"
    if candidate.record.status == "error":
        for gate in defined or [("run", "run", "")]:
            case = ET.SubElement(suite, "testcase", classname=classname, name=gate_name(*gate))
            message = candidate.record.error or "the candidate failed to run"
            error = ET.SubElement(case, "error", message=message, type="run-error")
            error.text = message
    else:
        _gate_cases(suite, candidate, classname)
    if warnings := candidate_warnings(candidate):
        out = ET.SubElement(suite, "system-out")
        out.text = "\n".join(f"WARNING {w}" for w in warnings)
    cases = suite.findall("testcase")
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(sum(c.find("failure") is not None for c in cases)))
    suite.set("errors", str(sum(c.find("error") is not None for c in cases)))
    suite.set("skipped", str(sum(c.find("skipped") is not None for c in cases)))
    return suite


def _gate_cases(suite: ET.Element, candidate: ModelResult, classname: str) -> None:
    metrics = index_metrics(candidate.metrics)
    for gate in candidate.gates:
        name = gate_name(gate.capability, gate.kind, gate.metric)
        case = ET.SubElement(suite, "testcase", classname=classname, name=name, time="0")
        properties = ET.SubElement(case, "properties")
        ET.SubElement(properties, "property", name="outcome", value=gate.outcome)
        evidence = "\n".join(gate_evidence(gate, metrics.get((gate.capability, gate.metric))))
        status = gate_status(gate, candidate.fail_on)
        if status == "pass":
            continue
        if status == "fail":
            failure = ET.SubElement(case, "failure", message=short_reason(gate), type=gate.kind)
            failure.text = evidence
        elif status == "inconclusive":  # not a pass: a skipped test that says what it lacks
            skipped = ET.SubElement(case, "skipped", message=short_reason(gate))
            skipped.text = evidence
        else:  # warn-only (--fail-on): the test passes, the reason stays visible
            out = ET.SubElement(case, "system-out")
            out.text = f"WARNING (warn-only gate, not failing the build)\n{evidence}"
