"""GitHub Actions workflow commands: `::error` / `::warning` lines that annotate the check.

Printed on stdout when GITHUB_ACTIONS=true. Data is escaped as the runner's toolkit does
(`%`, CR, LF in messages; also `:` and `,` in properties), so a model's output cannot inject a
command of its own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from harness.core.text import printable
from harness.evaluation import RunResult, gate_status, index_metrics
from harness.outputs._text import gate_evidence, short_reason


def under_github_actions(environ: Mapping[str, str] | None = None) -> bool:
    return (environ if environ is not None else os.environ).get("GITHUB_ACTIONS") == "true"


def _data(text: str) -> str:
    return printable(text).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _property(text: str) -> str:
    return _data(text).replace(":", "%3A").replace(",", "%2C")


def command(level: str, title: str, message: str, file: str | None = None) -> str:
    """One workflow command line, e.g. `::error title=...::message`."""
    properties = f"title={_property(title)}"
    if file:
        properties = f"file={_property(file)},{properties}"
    return f"::{level} {properties}::{_data(message)}"


def _repository_path(path: str | None) -> str | None:
    """GitHub places a file annotation by its path in the repository (the working directory)."""
    if not path:
        return None
    relative = os.path.relpath(os.path.abspath(path))
    return None if relative.startswith("..") else relative


def workflow_commands(result: RunResult) -> list[str]:
    """An error per failed gate and per candidate that failed to run; a warning per inconclusive
    or warn-only gate and per candidate warning (an adapter without effect, cases missing from a
    baseline)."""
    file = _repository_path(result.suite_path)
    lines = []
    if result.base.record.status == "error":
        lines.append(command("error", "harness: base failed", result.base.record.error or "", file))
    for candidate in result.candidates:
        name = candidate.record.name
        if candidate.record.status == "error":
            title = f"harness: {name} failed to run"
            lines.append(command("error", title, candidate.record.error or "", file))
            continue
        metrics = index_metrics(candidate.metrics)
        for gate in (g for g in candidate.gates if not g.passed):
            status = gate_status(gate, candidate.fail_on)
            level = "error" if status == "fail" else "warning"
            said = "failed" if gate.outcome == "fail" else "was inconclusive"
            title = f"harness: {name} {gate.kind} gate {said}: {short_reason(gate)}"
            evidence = gate_evidence(gate, metrics.get((gate.capability, gate.metric)))
            lines.append(command(level, title, "\n".join(evidence), file))
        for warning in candidate.warnings:
            lines.append(command("warning", f"harness: {name}", warning, file))
    for warning in result.warnings:
        lines.append(command("warning", "harness", warning, file))
    return lines
