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
from harness.outputs._console import (
    checkpoints_table,
    print_verdicts,
    quantized_table,
    summary_table,
)
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


# ------------------------------------------------------------ checkpoints while training

KNOWN = HOSTILE  # the forgetting gate's capability: a name like markup, shown as text everywhere


def point(step: int, new: float, known: float | None) -> dict[str, object]:
    """One checkpoint: new_facts qa.f1 gated by improve (min_gain 0.3 over a base of 0.1),
    KNOWN qa.em by forgetting (max_drop 0.1 from a base of 0.9)."""
    new_gate = {
        "capability": "new_facts", "kind": "improve", "metric": "qa.f1", "value": new,
        "base_value": 0.1, "limit": 0.3, "outcome": "pass" if new >= 0.4 else "fail",
    }  # fmt: skip
    known_gate = {
        "capability": KNOWN, "kind": "forgetting", "metric": "qa.em", "value": known,
        "base_value": 0.9, "limit": 0.1,
        "outcome": "pass" if known is not None and known >= 0.8 else "fail",
    }  # fmt: skip
    metrics = [
        {"capability": "new_facts", "metric": "qa.f1", "value": new,
         "ci_low": new - 0.1, "ci_high": new + 0.1, "n": 20},
        {"capability": KNOWN, "metric": "qa.em", "value": known,
         "ci_low": None if known is None else known - 0.05, "ci_high": None, "n": 20},
    ]  # fmt: skip
    gates = [new_gate, known_gate]
    passed = all(g["outcome"] == "pass" for g in gates)
    return {"step": step, "fingerprint": f"f{step}", "seconds": 1.0, "score": new,
            "passed": passed, "metrics": metrics, "gates": gates}  # fmt: skip


def trained(name: str, checkpoints: dict[str, object] | None) -> ModelResult:
    info = {"training": {"backend": "full", "wall_seconds": 3.0, "checkpoints": checkpoints}}
    record = ModelRecord(name, "candidate", f"ckpt/{name}", "f-" + name, "ok", None, info)
    return ModelResult(record, [metric(0.85)], [gate("pass", 0.85, "held")])


FULL = {
    "settings": {"every": 25, "capabilities": None, "select": "best-passing", "stop_on": "forgetting"},
    "points": [point(25, 0.2, 0.9), point(50, 0.5, 0.85), point(75, 0.7, 0.5), point(100, 0.8, None)],
    "selected_step": 50,
    "selection": "best-passing",
    "stopped_at": 100,
    "stop_reason": "a forgetting gate failed at steps 75 and 100",
}  # fmt: skip
LORA = {
    "settings": {"every": 50, "capabilities": None, "select": "last", "stop_on": None},
    "points": [point(50, 0.3, 0.9), point(100, 0.35, 0.88)],
    "selected_step": 100,
    "selection": "no checkpoint passed every gate; the last one is kept",
    "stopped_at": None,
    "stop_reason": None,
}  # fmt: skip


@pytest.fixture
def checkpointed() -> RunResult:
    base_metrics = [
        MetricValue(KNOWN, "qa.em", 0.9, 0.8, 1.0, 20),
        MetricValue("new_facts", "qa.f1", 0.1, 0.0, 0.2, 20),
    ]
    base = ModelResult(ModelRecord("base", "base", "builtin:tiny", "f0", "ok"), base_metrics)
    candidates = [trained("full", FULL), trained("lora", LORA), trained("plain", None)]
    return RunResult("20261130-120000-abcd", "ckpt", base, candidates)


def test_the_view_draws_each_gated_metric_across_checkpoints(checkpointed: RunResult) -> None:
    view = report_view(checkpointed)
    assert [c.candidate for c in view.checkpoints] == ["full", "lora"]  # "plain" has none
    full = view.checkpoints[0]
    assert full.steps == (25, 50, 75, 100) and full.every == 25
    assert (full.selected_step, full.stopped_at) == (50, 100)
    assert full.summary == "selected step 50 of 100 (best-passing)"
    assert full.stopped == "stopped early at step 100: a forgetting gate failed at steps 75 and 100"
    curves = {(c.capability, c.metric): c for c in full.curves}
    assert list(curves) == [("new_facts", "qa.f1"), (KNOWN, "qa.em")]
    known = curves[(KNOWN, "qa.em")]
    assert [p.value for p in known.points] == [0.9, 0.85, 0.5, None]  # null stays a gap
    assert known.points[1].ci_low == pytest.approx(0.8) and known.points[1].ci_high is None
    assert [p.outcomes for p in known.points] == [("pass",), ("pass",), ("fail",), ("fail",)]
    assert known.base_value == 0.9 and known.selected_step == 50
    (line,) = known.gates
    assert (line.kind, line.limit, line.label) == ("forgetting", 0.1, "limit (forgetting)")
    assert line.line == pytest.approx(0.8)  # base - max_drop
    (improve,) = curves[("new_facts", "qa.f1")].gates
    assert improve.line == pytest.approx(0.4)  # base + min_gain
    lora = view.checkpoints[1]
    assert lora.summary == (
        "selected step 100 of 100: no checkpoint passed every gate; the last one is kept"
    )
    assert lora.stopped == ""


def test_a_lower_is_better_metrics_limit_lies_above_its_base() -> None:
    ppl = MetricValue("lm", "ppl", 10.0, 9.0, 11.0, 20, lower_is_better=True)
    base = ModelResult(ModelRecord("base", "base", "builtin:tiny", "f0", "ok"), [ppl])
    gates = [
        {"capability": "lm", "kind": kind, "metric": "ppl", "value": 10.5, "base_value": 10.0,
         "limit": 2.0, "outcome": "pass"}
        for kind in ("forgetting", "improve")
    ] + [{"capability": "lm", "kind": "threshold", "metric": "ppl", "value": 10.5,
          "base_value": None, "limit": 12.0, "outcome": "pass"}]  # fmt: skip
    record = {"points": [{"step": 10, "metrics": [], "gates": gates}], "selected_step": 10}
    view = report_view(RunResult("r", "s", base, [trained("t", record)]))
    (curve,) = view.checkpoints[0].curves
    assert {g.kind: g.line for g in curve.gates} == {
        "forgetting": 12.0,  # base + max_drop: higher is worse
        "improve": 8.0,  # base - min_gain
        "threshold": 12.0,  # the line as written
    }
    assert curve.points[0].value == 10.5  # from the gate when the metric is missing


def _section(html: str) -> str:
    start = html.index("<h3>Checkpoints: forgetting curves</h3>")
    return html[start : html.index("<h3>", start + 1)]


def test_html_draws_one_chart_per_gated_metric_with_base_limit_and_selection(
    checkpointed: RunResult,
) -> None:
    html = render_report([report_view(checkpointed)])
    section = _section(html)
    assert section.count("<svg") == 2  # new_facts qa.f1 and KNOWN qa.em, both candidates on each
    assert "<b>bold</b>" not in html  # the hostile capability, escaped in captions and titles
    assert "&lt;b&gt;bold&lt;/b&gt;|[red]x[/red] · qa.em</figcaption>" in section
    assert section.count('class="baseline"') == 2 and section.count('class="limit"') == 2
    assert ">limit (forgetting)</text>" in section and ">limit (improve)</text>" in section
    assert section.count('class="ring"') == 4  # the selected step of each candidate, per chart
    assert "full · step 50: 0.850 [0.800, —] · forgetting pass · selected (best-passing)" in section
    assert "full · step 100: — · forgetting fail · training stopped here" not in section  # a gap
    assert "full · step 100: 0.800 [0.700, 0.900] · improve pass · training stopped here" in section
    assert "selected step 50 of 100 (best-passing)" in section
    assert "stopped early at step 100: a forgetting gate failed at steps 75 and 100" in section
    assert 'class="band"' in section and 'class="errorbar"' not in section


def test_no_checkpoints_no_section(run: RunResult) -> None:
    view = report_view(run)
    assert view.checkpoints == ()
    assert "Checkpoints: forgetting curves" not in render_report([view])


def test_console_checkpoint_table_marks_the_selected_step(checkpointed: RunResult) -> None:
    table = checkpoints_table(checkpointed)
    assert table is not None
    out = StringIO()
    Console(file=out, width=200, color_system=None).print(table)
    text = out.getvalue()
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in text.splitlines() if "│" in line]
    rows = [row for row in rows if row[0]]  # header cells wrap onto lines of their own
    selected = [(row[0], row[1]) for row in rows if "selected" in row[-1]]
    assert selected == [("full", "50"), ("lora", "100")]
    stopped = [(row[0], row[1]) for row in rows if "stopped" in row[-1]]
    assert stopped == [("full", "100")]
    by_step = {(row[0], row[1]): row for row in rows}
    assert by_step[("full", "75")][2:5] == ["0.700 ✓", "0.500 ✗", "forgot"]
    assert by_step[("full", "50")][4] == "passed"
    assert "[red]x[/red]" in text  # the capability's markup printed as written
    assert "full: selected step 50 of 100 (best-passing); stopped early at step 100" in text
    assert checkpoints_table(RunResult("r", "s", checkpointed.base, [trained("x", None)])) is None


def test_markdown_says_which_checkpoint_each_candidate_kept(checkpointed: RunResult) -> None:
    text = markdown_summary(checkpointed)
    assert "#### Checkpoints" in text
    assert (
        "- **full** · selected step 50 of 100 (best-passing) · stopped early at step 100: "
        "a forgetting gate failed at steps 75 and 100\n" in text
    )
    assert "- **lora** · selected step 100 of 100: no checkpoint passed every gate; " in text
    assert "**plain**" not in text
    assert "#### Checkpoints" not in markdown_summary(
        RunResult("r", "s", checkpointed.base, [trained("x", None)])
    )


def test_candidates_judged_against_different_references_each_get_a_named_base(
    checkpointed: RunResult,
) -> None:
    """A baseline run can give each candidate its own reference value: each base line then names
    its candidate, and a candidate named like markup stays text in labels and tooltips."""
    moved = [
        {**p, "gates": [{**g, "base_value": 0.95} for g in p["gates"]]}  # type: ignore[dict-item]
        for p in LORA["points"]  # type: ignore[attr-defined]
    ]
    hostile = trained(HOSTILE, {**LORA, "points": moved})
    run = RunResult("r", "s", checkpointed.base, [trained("full", FULL), hostile])
    section = _section(render_report([report_view(run)]))
    assert "<b>bold</b>" not in section
    assert ">base (full)</text>" in section
    assert ">base (&lt;b&gt;bold&lt;/b&gt;|[red]x[/red])</text>" in section
    assert "<title>&lt;b&gt;bold&lt;/b&gt;|[red]x[/red] · step 50: 0.900" in section
