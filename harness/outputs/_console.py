"""What a person sees in the terminal: live progress while a run works, tables when it ends."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from harness.core.progress import Reporter
from harness.core.text import printable, terminal
from harness.evaluation import RunResult, gate_status
from harness.outputs._text import (
    GATE_MARK,
    candidate_warnings,
    checkpoint_record,
    checkpoint_verdict,
    number,
    selection_text,
    short_reason,
    status_cell,
    stop_text,
)

VERDICT_STYLE = {
    "passed": "green",
    "inconclusive": "yellow",
    "regressed": "bold red",
    "error": "bold magenta",
    "evaluated": "cyan",
}
STATUS_STYLE = {"pass": "green", "fail": "bold red", "inconclusive": "yellow", "warn": "yellow"}


@dataclass
class _Pace:
    """How fast one model's evaluation goes, from its first progress report on."""

    started: float
    first_done: float
    printed_at: float
    printed_done: float

    def eta(self, done: float, total: int, now: float) -> str:
        progressed = done - self.first_done
        if progressed <= 0:
            return "ETA unknown"
        return "ETA " + _duration((now - self.started) / progressed * (total - done))


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{rest}s"


class ConsoleReporter(Reporter):
    """A progress bar per model in a terminal; one line per stage in CI logs."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live = console.is_terminal
        self.progress = Progress(
            TextColumn("{task.fields[model]:<16} {task.fields[stage]:<11}", markup=False),
            BarColumn(),
            TextColumn("{task.completed:>6.0f}/{task.total:<6.0f}"),
            TextColumn("{task.fields[speed]:>10}", markup=False),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.tasks: dict[str, TaskID] = {}
        self.started: dict[str, float] = {}
        self.paces: dict[str, _Pace] = {}  # evaluations in progress
        if self.live:
            self.progress.start()

    def stage(self, model: str, stage: str, total: int | None = None) -> None:
        self.started.setdefault(model, time.perf_counter())
        if model not in self.tasks:
            self.tasks[model] = self.progress.add_task(
                "", total=total or 1, model=printable(model), stage=printable(stage), speed=""
            )
        self.paces.pop(model, None)
        self.progress.update(
            self.tasks[model], stage=printable(stage), total=total or 1, completed=0
        )
        if not self.live:
            count = f" ({total} cases)" if total else ""
            self.console.print(
                printable(f"[{model}] {stage}{count}"), markup=False, highlight=False
            )

    def advance(self, model: str, completed: float, *, batches: int = 0, tokens: int = 0) -> None:
        """In a terminal, the bar and tokens/s; in a CI log, a line per tenth of the cases (or
        every 15 s) with batches, tokens/s and an ETA, so a long evaluation is never silent."""
        now = time.perf_counter()
        task = self.progress.tasks[self.tasks[model]]
        total = int(task.total or 1)
        pace = self.paces.setdefault(model, _Pace(now, completed, now, completed))
        elapsed = max(now - pace.started, 1e-9)
        speed = f"{tokens / elapsed:.1f} tok/s" if tokens else ""
        self.progress.update(self.tasks[model], completed=completed, speed=speed)
        if self.live or completed <= pace.first_done:
            return
        finished = completed >= total
        if batches == 0 and not finished:  # served from the cache so far: nothing to time yet
            return
        if (
            not finished
            and completed - pace.printed_done < total / 10
            and now - pace.printed_at < 15
        ):
            return
        pace.printed_at, pace.printed_done = now, completed
        line = (
            f"[{model}] evaluating {completed:.0f}/{total} cases · {batches} batches · "
            f"{tokens} tokens, {tokens / elapsed:.1f} tok/s"
        )
        line += "" if finished else f" · {pace.eta(completed, total, now)}"
        self.console.print(printable(line), markup=False, highlight=False)

    def training(
        self, model: str, step: int, total: int, loss: float | None, phase: str = "training"
    ) -> None:
        stage = phase if loss is None else f"loss {loss:.3f}"
        self.progress.update(self.tasks[model], total=max(total, 1), completed=step, stage=stage)
        if not self.live and (step == total or step % max(total // 5, 1) == 0):
            shown = "" if loss is None else f", loss {loss:.4f}"
            self.console.print(
                printable(f"[{model}] {phase} step {step}/{total}{shown}"),
                markup=False,
                highlight=False,
            )

    def note(self, model: str, text: str) -> None:
        self.console.print(printable(f"[{model}] {text}"), markup=False, highlight=False)

    def done(self, model: str, verdict: str) -> None:
        task = self.progress.tasks[self.tasks[model]] if model in self.tasks else None
        if task is not None:
            self.progress.update(self.tasks[model], completed=task.total, stage=verdict)
        if not self.live:
            seconds = time.perf_counter() - self.started.get(model, time.perf_counter())
            self.console.print(
                printable(f"[{model}] {verdict} in {seconds:.1f}s"), markup=False, highlight=False
            )

    def close(self) -> None:
        if self.live:
            self.progress.stop()


def make_console(*, stderr: bool = False) -> Console:
    """A console that keeps tables readable in CI logs, where there is no terminal width."""
    probe = Console(stderr=stderr)
    return probe if probe.is_terminal else Console(stderr=stderr, width=200)


def summary_table(result: RunResult) -> Table:
    """Candidate x gate: metric, base, value, delta with the candidate's 95% interval, verdict."""
    table = Table(title=terminal(f"{result.suite} · run {result.run_id}"), title_justify="left")
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
        error = terminal(candidate.record.error or "")
        table.add_row(terminal(name), "", "", "", "", "", "", "", f"[magenta]error[/]: {error}")
        return
    intervals = {(m.capability, m.metric): m for m in candidate.metrics}
    if not candidate.gates:
        table.add_row(terminal(name), "", "(no gates)", "", "", "", "", "", "[green]passed[/]")
    for gate in candidate.gates:
        metric = intervals.get((gate.capability, gate.metric))
        ci = f"[{metric.ci_low:.3f}, {metric.ci_high:.3f}]" if metric else "—"
        style = STATUS_STYLE[gate_status(gate, candidate.fail_on)]
        verdict = f"[{style}]{terminal(status_cell(gate, candidate.fail_on))}[/]"
        table.add_row(
            terminal(name), terminal(gate.capability), gate.kind, terminal(gate.metric),
            number(gate.base_value), number(gate.value), ci, number(gate.delta, signed=True), verdict,
        )  # fmt: skip


def _size(count: float | None, unit: str = "") -> str:
    if count is None:
        return "—"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(count) >= scale:
            return f"{count / scale:.3g}{suffix}{unit}"
    return f"{count:.3g}{unit}"


def methods_table(result: RunResult) -> Table | None:
    """Trained candidates side by side: each gated metric, then what the training cost."""
    trained = [c for c in result.candidates if "training" in c.record.info]
    if not trained:
        return None
    gated = list(
        dict.fromkeys((g.capability, g.metric) for c in result.candidates for g in c.gates)
    )
    table = Table(title="methods: quality (gated metrics) and cost", title_justify="left")
    table.add_column("candidate")
    table.add_column("backend")
    for capability, metric in gated:
        table.add_column(f"{capability}\n{metric}", justify="right")
    for column in ("train s", "tokens/s", "peak mem", "trainable", "size", "verdict"):
        table.add_column(column, justify="right")
    base_values = {(m.capability, m.metric): m.value for m in result.base.metrics}
    table.add_row("base", "", *[number(base_values.get(k)) for k in gated], "", "", "", "", "", "")
    for candidate in trained:
        table.add_row(*_method_row(candidate, gated))
    return table


def quantized_table(result: RunResult) -> Table | None:
    """Quantized candidates beside the base: each gated metric, the weights' memory and the
    evaluation's time (both as measured when the model was loaded; a cached rerun loads none)."""
    quantized = [c for c in result.candidates if "quantized" in c.record.info]
    if not quantized:
        return None
    gated = list(dict.fromkeys((g.capability, g.metric) for c in quantized for g in c.gates))
    table = Table(title="quantized: quality and cost", title_justify="left")
    for column in ("candidate", "quantized"):
        table.add_column(column)
    for capability, metric in gated:
        table.add_column(f"{capability}\n{metric}", justify="right")
    for column in ("weights", "eval s", "verdict"):
        table.add_column(column, justify="right")
    for model in (result.base, *quantized):
        info = model.record.info
        values = {(m.capability, m.metric): m.value for m in model.metrics}
        verdict = "" if model is result.base else model.verdict
        seconds = info.get("seconds")
        table.add_row(
            terminal(model.record.name),
            terminal(str(info.get("quantized", ""))),
            *[number(values.get(k)) for k in gated],
            _size(info.get("weights_bytes"), "B"),
            f"{seconds:.1f}" if isinstance(seconds, int | float) else "—",
            f"[{VERDICT_STYLE[verdict]}]{verdict}[/]" if verdict else "",
        )
    return table


def checkpoints_table(result: RunResult) -> Table | None:
    """Each trained candidate's checkpoints, one row per step: every gated metric with its gates
    (✓ pass, ✗ fail, ? inconclusive), the checkpoint in a word, and which step was selected (the
    candidate gated above) and where training stopped early."""
    evaluated = [
        (candidate.record.name, record)
        for candidate in result.candidates
        if (record := checkpoint_record(candidate.record.info)) is not None
    ]
    if not evaluated:
        return None
    gated = list(
        dict.fromkeys(
            (g["capability"], g["metric"])
            for _, record in evaluated
            for point in record["points"]
            for g in point.get("gates") or ()
        )
    )
    table = Table(
        title="checkpoints: gated metrics at each step (✓ pass, ✗ fail, ? inconclusive)",
        title_justify="left",
        caption=_checkpoint_caption(evaluated),
        caption_justify="left",
    )
    table.add_column("candidate")
    table.add_column("step", justify="right")
    for capability, metric in gated:
        table.add_column(f"{terminal(capability)}\n{terminal(metric)}", justify="right")
    table.add_column("checkpoint")
    table.add_column("selected")
    for name, record in evaluated:
        for point in record["points"]:
            table.add_row(*_checkpoint_row(name, record, point, gated))
        table.add_section()
    return table


def _checkpoint_row(name: str, record: Any, point: Any, gated: list[tuple[str, str]]) -> list[str]:
    values = {(m["capability"], m["metric"]): m.get("value") for m in point.get("metrics") or ()}
    marks: dict[tuple[str, str], str] = {}
    for gate in point.get("gates") or ():
        key = (gate["capability"], gate["metric"])
        style = STATUS_STYLE.get(gate["outcome"], "")
        mark = GATE_MARK.get(gate["outcome"], "?")
        marks[key] = marks.get(key, "") + (f" [{style}]{mark}[/]" if style else f" {mark}")
        values.setdefault(key, gate.get("value"))
    verdict = checkpoint_verdict(point)
    colour = {"passed": "green", "forgot": "bold red", "not passing": "yellow"}.get(verdict)
    step = point["step"]
    notes = []
    if step == record.get("selected_step"):
        notes.append("[bold]◀ selected[/]")
    if step == record.get("stopped_at"):
        notes.append("[yellow]stopped early[/]")
    return [
        terminal(name),
        str(step),
        *[number(values.get(k)) + marks.get(k, "") for k in gated],
        f"[{colour}]{verdict}[/]" if colour else verdict,
        " ".join(notes),
    ]


def _checkpoint_caption(evaluated: list[tuple[str, Any]]) -> str:
    """A line per candidate: which checkpoint was selected and why, and an early stop's reason."""
    lines = []
    for name, record in evaluated:
        stopped = stop_text(record)
        text = f"{name}: {selection_text(record)}" + (f"; {stopped}" if stopped else "")
        lines.append(terminal(text))
    return "\n".join(lines)


def _method_row(candidate: Any, gated: list[tuple[str, str]]) -> list[str]:
    training = candidate.record.info["training"]
    values = {(m.capability, m.metric): m.value for m in candidate.metrics}
    verdict = candidate.verdict
    return [
        terminal(candidate.record.name),
        terminal(training["backend"]),
        *[number(values.get(k)) for k in gated],
        f"{training['wall_seconds']:.1f}"
        + (" (cached)" if training.get("reused_artifact") else ""),
        _size(training.get("tokens_per_second")),
        _size(training.get("peak_memory_bytes"), "B"),
        f"{_size(training['trainable_parameters'])}/{_size(training['total_parameters'])}",
        _size(training.get("artifact_bytes"), "B"),
        f"[{VERDICT_STYLE[verdict]}]{verdict}[/]",
    ]


def print_verdicts(console: Console, result: RunResult) -> None:
    """A line per candidate (its verdict and why), then every warning, then the exit code."""
    for candidate in result.candidates:
        verdict = candidate.verdict
        if verdict == "error":
            why = candidate.record.error or ""
        elif verdict == "regressed":
            why = ", ".join(map(short_reason, candidate.failed))
        else:
            why = ", ".join(map(short_reason, candidate.inconclusive))
        style = VERDICT_STYLE[verdict]
        line = f"[{style}]{verdict.upper():<12}[/] {terminal(candidate.record.name)}"
        console.print(line + (f" — {terminal(why)}" if why else ""))
    warnings = [
        w
        for c in result.candidates
        for w in candidate_warnings(c, inconclusive=c.verdict != "inconclusive")
    ] + result.warnings
    for warning in warnings:
        console.print(f"[yellow]WARNING[/]      {terminal(warning)}")
    if result.base.record.status == "error":
        console.print(f"[magenta]ERROR[/]        base — {terminal(result.base.record.error or '')}")
    console.print(f"exit {result.exit_code} ({result.status})")
