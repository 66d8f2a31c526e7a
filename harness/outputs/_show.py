"""`harness show RUN`: a stored run as terminal tables."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from harness.core.text import terminal
from harness.evaluation import fail_on_of, gate_status
from harness.outputs._text import status_cell

STATUS_STYLE = {"pass": "green", "fail": "bold red", "inconclusive": "yellow", "warn": "yellow"}


def _models_table(run: Any) -> Table:
    table = Table(title="models", title_justify="left")
    for column in ("name", "role", "reference", "fingerprint", "status", "cases", "note"):
        table.add_column(column)
    for model in run.models:
        counts = run.case_counts.get(model.name)
        cases = f"{counts.passed}/{counts.total} passed" if counts else ""
        table.add_row(
            terminal(model.name), model.role, terminal(model.reference), (model.fingerprint or "")[:12],
            model.status, cases, terminal(model.error or ""),
        )  # fmt: skip
    return table


def _metrics_table(run: Any) -> Table:
    base = {(m.capability, m.metric): m.value for m in run.metrics.get("base", ())}
    table = Table(title="metrics (value [95% CI], delta vs base)", title_justify="left")
    for column in ("model", "capability", "metric", "value", "95% CI", "delta"):
        table.add_column(column)
    for model in run.models:
        for m in run.metrics.get(model.name, ()):
            base_value = base.get((m.capability, m.metric))
            delta = (
                "" if model.name == "base" or base_value is None else f"{m.value - base_value:+.3f}"
            )
            ci = f"[{m.ci_low:.3f}, {m.ci_high:.3f}]"
            table.add_row(
                terminal(model.name),
                terminal(m.capability),
                terminal(m.metric),
                f"{m.value:.3f}",
                ci,
                delta,
            )
    return table


def _gates_table(run: Any) -> Table:
    table = Table(title="gates", title_justify="left")
    for column in ("candidate", "capability", "gate", "verdict", "why"):
        table.add_column(column)
    fail_on = fail_on_of(run.config)
    for name, gates in run.gates.items():
        for gate in gates:
            status = gate_status(gate, fail_on)
            verdict = f"[{STATUS_STYLE[status]}]{terminal(status_cell(gate, fail_on))}[/]"
            table.add_row(
                terminal(name),
                terminal(gate.capability),
                gate.kind,
                verdict,
                terminal(gate.message),
            )
    return table


def render_run(run: Any) -> list[Any]:
    s = run.summary
    header = terminal(
        f"run {s.id} · suite {s.suite_name} · {s.status} (exit {s.exit_code}) · started {str(s.started_at)[:19]} UTC"
    )
    return [header, _models_table(run), _metrics_table(run), _gates_table(run)]
