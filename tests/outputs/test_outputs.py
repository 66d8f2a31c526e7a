"""Every renderer of a run, on one fixed run built by hand: four candidates with the four
verdicts (passed, inconclusive, regressed, error), one of them named like markup. Each renderer
(console, JSON, JUnit, Markdown, annotations, HTML) must say the same verdict for each, and escape
the name for its medium. Fast: no model runs."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from io import StringIO

import pytest
from rich.console import Console

from harness.core.records import GateResult, MetricValue, ModelRecord
from harness.evaluation import ModelResult, RunResult
from harness.outputs._annotations import workflow_commands
from harness.outputs._console import print_verdicts, quantized_table, summary_table
from harness.outputs._json import run_summary
from harness.outputs._junit import junit_xml
from harness.outputs._markdown import markdown_summary
from harness.outputs.html import render_report, report_view
from harness.suite import CapabilityBase

HOSTILE = "<b>bold</b>|[red]x[/red]"
CAPABILITY = CapabilityBase.model_validate(
    {"name": "facts", "forgetting": {"metric": "qa.em", "max_drop": 0.1}}
)


def metric(value: float) -> MetricValue:
    return MetricValue("facts", "qa.em", value, value - 0.1, value + 0.1, 40)


def gate(outcome: str, value: float, message: str) -> GateResult:
    return GateResult(
        "facts", "forgetting", "qa.em", value, 0.9, value - 0.9, 0.1, outcome,  # type: ignore[arg-type]
        message, {"p_value": 0.01, "method": "exact_unconditional", "n": 40},
    )  # fmt: skip


def candidate(name: str, outcome: str | None, value: float = 0.9) -> ModelResult:
    if outcome is None:
        record = ModelRecord(name, "candidate", "ckpt", None, "error", "CUDA out of memory")
        return ModelResult(record)
    record = ModelRecord(name, "candidate", "ckpt", "f-" + name, "ok")
    message = {"pass": "held", "inconclusive": "too few cases", "fail": "dropped 0.4"}[outcome]
    return ModelResult(record, [metric(value)], [gate(outcome, value, message)])


@pytest.fixture
def run() -> RunResult:
    base = ModelResult(ModelRecord("base", "base", "builtin:tiny", "f0", "ok"), [metric(0.9)])
    candidates = [
        candidate("good", "pass"),
        candidate("unsure", "inconclusive", 0.85),
        candidate(HOSTILE, "fail", 0.5),
        candidate("broken", None),
    ]
    return RunResult("20261130-120000-abcd", "fixed", base, candidates, suite_path="s.yaml")


EXPECTED = {"good": "passed", "unsure": "inconclusive", HOSTILE: "regressed", "broken": "error"}


def test_the_run_view_itself(run: RunResult) -> None:
    assert {c.record.name: c.verdict for c in run.candidates} == EXPECTED
    assert run.exit_code == 3 and run.status == "error"  # a candidate failed to run


def test_console_table_and_verdicts_print_names_as_text(run: RunResult) -> None:
    out = StringIO()
    console = Console(file=out, width=200, color_system=None)
    console.print(summary_table(run))
    print_verdicts(console, run)
    text = out.getvalue()
    assert HOSTILE in text  # rich markup in a name printed as written, not interpreted
    for name, verdict in EXPECTED.items():
        assert f"{verdict.upper():<12} {name}" in text or f"{verdict.upper()} {name}" in text, text


def test_json_summary(run: RunResult) -> None:
    summary = json.loads(json.dumps(run_summary(run)))
    assert summary["status"] == "error" and summary["exit_code"] == 3
    assert {c["name"]: c["status"] for c in summary["candidates"]} == EXPECTED


def test_junit_failures_and_errors(run: RunResult) -> None:
    root = ET.fromstring(ET.tostring(junit_xml(run, [CAPABILITY]).getroot()))
    suites = {s.get("name", "").split(" · ", 1)[1]: s for s in root.iter("testsuite")}
    assert set(suites) == set(EXPECTED)
    assert suites[HOSTILE].get("failures") == "1" and suites["good"].get("failures") == "0"
    assert suites["broken"].get("errors") == "1"
    assert suites["unsure"].get("failures") == "0"  # inconclusive warns unless --strict


def test_markdown_escapes_and_says_each_verdict(run: RunResult) -> None:
    text = markdown_summary(run)
    assert "<b>" not in text
    # markup shows as text, and a pipe in the name cannot split the table cell
    assert "| &lt;b&gt;bold&lt;/b&gt;\\|[red]x[/red] | ❌ regressed |" in text
    for verdict in set(EXPECTED.values()):
        assert verdict in text.lower()


def test_annotations_error_per_failure_warning_per_inconclusive(run: RunResult) -> None:
    lines = workflow_commands(run)
    errors = [line for line in lines if line.startswith("::error")]
    warnings = [line for line in lines if line.startswith("::warning")]
    assert len(errors) == 2  # the regressed gate and the candidate that failed to run
    assert any("unsure" in line and "inconclusive" in line for line in warnings)
    assert all("\n" not in line for line in lines)  # one command per line


def test_html_report_view_and_page_from_the_same_run(run: RunResult) -> None:
    view = report_view(run)
    assert {v.name: v.verdict for v in view.verdicts} == EXPECTED
    assert view.overview == [("error", 1), ("regressed", 1), ("inconclusive", 1), ("passed", 1)]
    assert (view.status, view.exit_code) == ("error", 3)  # a live run: its results' own
    html = render_report([view])
    assert "<b>bold</b>" not in html  # neither in the page nor in its embedded case data
    assert "&lt;b&gt;bold&lt;/b&gt;" in html
    for verdict in set(EXPECTED.values()):
        assert verdict in html


def test_quantized_candidates_show_their_weights_and_time_beside_the_base() -> None:
    base_info = {"weights_bytes": 4_000_000, "seconds": 2.0}
    base = ModelResult(
        ModelRecord("base", "base", "builtin:tiny", "f0", "ok", None, base_info), [metric(0.9)]
    )
    info = {"quantized": "nf4", "weights_bytes": 1_000_000, "seconds": 3.5}
    record = ModelRecord("tiny-nf4", "candidate", "builtin:tiny", "f1", "ok", None, info)
    nf4 = ModelResult(record, [metric(0.85)], [gate("pass", 0.85, "held")])
    run = RunResult("20261130-120000-abcd", "q", base, [nf4])
    out = StringIO()
    table = quantized_table(run)
    assert table is not None and quantized_table(RunResult("r", "s", base, [])) is None
    Console(file=out, width=200, color_system=None).print(table)
    rows = {line.split("│")[1].strip(): line for line in out.getvalue().splitlines() if "│" in line}
    assert "4MB" in rows["base"] and "2.0" in rows["base"]
    assert "nf4" in rows["tiny-nf4"] and "1MB" in rows["tiny-nf4"] and "passed" in rows["tiny-nf4"]


def test_html_report_shows_a_quantized_candidates_cost_beside_its_quality() -> None:
    """Did quantizing break a capability, and what did it save? Memory and time as ratios to the
    base; a time served from the cache is no measurement and says so."""
    computed = {"loaded": True, "requests_cached": 0, "requests_computed": 40}
    base_info = computed | {"weights_bytes": 4_000_000, "seconds": 2.0}
    base = ModelResult(
        ModelRecord("base", "base", "builtin:tiny", "f0", "ok", None, base_info), [metric(0.9)]
    )
    nf4_info = computed | {"quantized": "nf4", "weights_bytes": 1_000_000, "seconds": 3.0}
    nf4 = ModelResult(
        ModelRecord("tiny-nf4", "candidate", "builtin:tiny", "f1", "ok", None, nf4_info),
        [metric(0.85)],
        [gate("pass", 0.85, "held")],
    )
    cached_info = {"loaded": False, "requests_cached": 40, "requests_computed": 0}
    int8 = ModelResult(
        ModelRecord(
            "tiny-int8", "candidate", "builtin:tiny", "f2", "ok", None,
            cached_info | {"quantized": "int8", "seconds": 0.1},
        ),
        [metric(0.5)],
        [gate("fail", 0.5, "dropped 0.4")],
    )  # fmt: skip
    view = report_view(RunResult("20261130-120000-abcd", "q", base, [nf4, int8]))
    rows = {row.name: row for row in view.quantized}
    assert list(rows) == ["base", "tiny-nf4", "tiny-int8"]
    assert rows["tiny-nf4"].weights_vs_base == pytest.approx(0.25)
    assert rows["tiny-nf4"].seconds_vs_base == pytest.approx(1.5)
    assert rows["tiny-nf4"].quality_delta == pytest.approx(-0.05)
    assert rows["tiny-int8"].seconds is None and "cache" in rows["tiny-int8"].note
    assert rows["tiny-int8"].verdict == "regressed"
    html = render_report([view])
    section = html[html.index("Quantized: quality beside cost") :]
    assert "0.25x" in section and "1.50x" in section and "nf4" in section and "int8" in section
    plain = report_view(RunResult("r", "s", base, [candidate("good", "pass")]))
    assert plain.quantized == () and "Quantized: quality" not in render_report([plain])
