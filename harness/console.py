"""What a person sees in the terminal: live progress while a run works, tables when it ends."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from harness.runner import Reporter, RunResult

VERDICT_STYLE = {
    "passed": "green",
    "regressed": "bold red",
    "error": "bold magenta",
    "evaluated": "cyan",
}


class ConsoleReporter(Reporter):
    """A progress bar per model in a terminal; one line per stage in CI logs."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live = console.is_terminal
        self.progress = Progress(
            TextColumn("{task.fields[model]:<16} {task.fields[stage]:<11}"),
            BarColumn(),
            TextColumn("{task.completed:>6.0f}/{task.total:<6.0f}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.tasks: dict[str, TaskID] = {}
        self.started: dict[str, float] = {}
        if self.live:
            self.progress.start()

    def stage(self, model: str, stage: str, total: int | None = None) -> None:
        self.started.setdefault(model, time.perf_counter())
        if model not in self.tasks:
            self.tasks[model] = self.progress.add_task(
                "", total=total or 1, model=model, stage=stage
            )
        self.progress.update(self.tasks[model], stage=stage, total=total or 1, completed=0)
        if not self.live:
            count = f" ({total} cases)" if total else ""
            self.console.print(f"[{model}] {stage}{count}", markup=False, highlight=False)

    def advance(self, model: str, completed: float) -> None:
        self.progress.update(self.tasks[model], completed=completed)

    def done(self, model: str, verdict: str) -> None:
        task = self.progress.tasks[self.tasks[model]] if model in self.tasks else None
        if task is not None:
            self.progress.update(self.tasks[model], completed=task.total, stage=verdict)
        if not self.live:
            seconds = time.perf_counter() - self.started.get(model, time.perf_counter())
            self.console.print(
                f"[{model}] {verdict} in {seconds:.1f}s", markup=False, highlight=False
            )

    def close(self) -> None:
        if self.live:
            self.progress.stop()


def make_console(*, stderr: bool = False) -> Console:
    """A console that keeps tables readable in CI logs, where there is no terminal width."""
    probe = Console(stderr=stderr)
    return probe if probe.is_terminal else Console(stderr=stderr, width=200)


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def summary_table(result: RunResult) -> Table:
    """Candidate x gate: metric, base, value, delta with the candidate's 95% interval, verdict."""
    table = Table(title=f"{result.suite} · run {result.run_id}", title_justify="left")
    for column in (
        "candidate",
        "capability",
        "gate",
        "metric",
        "base",
        "value",
        "95% CI",
        "delta",
        "verdict",
    ):
        table.add_column(
            column, justify="right" if column in {"base", "value", "delta"} else "left"
        )
    for candidate in result.candidates:
        _add_candidate_rows(table, candidate)
    return table


def _add_candidate_rows(table: Table, candidate: Any) -> None:
    name = candidate.record.name
    if candidate.record.status == "error":
        table.add_row(
            name, "", "", "", "", "", "", "", f"[magenta]error[/]: {candidate.record.error}"
        )
        return
    intervals = {(m.capability, m.metric): m for m in candidate.metrics}
    if not candidate.gates:
        table.add_row(name, "", "(no gates)", "", "", "", "", "", "[green]passed[/]")
    for gate in candidate.gates:
        metric = intervals.get((gate.capability, gate.metric))
        ci = f"[{metric.ci_low:.3f}, {metric.ci_high:.3f}]" if metric else "—"
        verdict = "[green]pass[/]" if gate.passed else f"[bold red]FAIL[/] {escape(gate.message)}"
        table.add_row(
            escape(name), escape(gate.capability), gate.kind, escape(gate.metric),
            _fmt(gate.base_value), _fmt(gate.value), ci, _fmt(gate.delta, signed=True), verdict,
        )  # fmt: skip


def print_verdicts(console: Console, result: RunResult) -> None:
    for candidate in result.candidates:
        verdict = candidate.verdict
        failed = [g for g in candidate.gates if not g.passed]
        why = (
            candidate.record.error
            if verdict == "error"
            else "; ".join(f"{g.capability}: {g.message}" for g in failed)
        )
        style = VERDICT_STYLE[verdict]
        console.print(
            f"[{style}]{verdict.upper():<9}[/] {candidate.record.name}"
            + (f" — {why}" if why else "")
        )
    if result.base.record.status == "error":
        console.print(f"[magenta]ERROR[/]     base — {escape(result.base.record.error or '')}")
    console.print(f"exit {result.exit_code} ({result.status})")
