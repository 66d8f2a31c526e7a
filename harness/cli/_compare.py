"""`harness compare RUN_A RUN_B`: what changed between two runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from harness.cli._common import db_option, number_text, reader, short_text
from harness.core.text import printable
from harness.outputs._console import make_console

_STYLE = {"better": "green", "worse": "red", "same": "dim", "new": "cyan", "gone": "magenta"}


_VERDICT_STYLE = {"passed": "green", "regressed": "bold red", "error": "bold magenta"}


@click.command()
@click.argument("run_a", metavar="RUN_A")
@click.argument("run_b", metavar="RUN_B")
@db_option
@click.option("--limit", default=30, show_default=True, help="Most flipped cases to list.")
@click.option("--all", "show_all", is_flag=True, help="List unchanged metrics too.")
def compare(run_a: str, run_b: str, db: Path | None, limit: int, show_all: bool) -> None:
    """What changed from RUN_A to RUN_B: verdicts, every metric, every case that flipped."""
    from harness.outputs._history import compare_runs

    store = reader(db)
    a, b = (_side(store, store.resolve_run(ref)) for ref in (run_a, run_b))
    comparison = compare_runs(a, b)
    console = make_console()
    console.print(Text(printable(f"compare {comparison.run_a} → {comparison.run_b}"), style="bold"))
    console.print(verdict_table(comparison))
    console.print(metric_table(comparison, show_all))
    console.print(flip_table(comparison, limit))


def _side(store: Any, run_id: str) -> Any:
    from harness.outputs._history import RunSide

    run = store.load_run(run_id)
    cases = store.cases_by_model(run_id)
    from harness.evaluation import fail_on_of

    fail_on = fail_on_of(run.config)
    return RunSide(run_id, run.models, run.metrics, run.gates, cases, fail_on)


def verdict_table(comparison: Any) -> Table:
    table = Table(title="candidate verdicts", title_justify="left")
    for column in ("candidate", "A", "B"):
        table.add_column(column)
    for change in comparison.verdicts:
        cells = [
            Text(v or "(absent)", style=_VERDICT_STYLE.get(v or "", "dim"))
            for v in (change.a, change.b)
        ]
        table.add_row(Text(printable(change.model)), *cells)
    return table


def metric_table(comparison: Any, show_all: bool) -> Table | Text:
    changes = [c for c in comparison.metrics if show_all or c.direction != "same"]
    unchanged = len(comparison.metrics) - len(changes)
    if not changes:
        return Text(f"metrics: none changed ({unchanged} compared)")
    title = "metrics" + (
        f" ({unchanged} unchanged not shown; --all lists them)" if unchanged else ""
    )
    table = Table(title=title, title_justify="left")
    for column in ("model", "capability", "metric", "A", "B", "delta", "change"):
        table.add_column(column, justify="right" if column in {"A", "B", "delta"} else "left")
    order = {"worse": 0, "gone": 1, "new": 2, "better": 3, "same": 4}
    for c in sorted(changes, key=lambda c: order[c.direction]):
        word = c.direction + (" (beyond noise)" if c.beyond_noise else "")
        table.add_row(
            Text(printable(c.model)), Text(printable(c.capability)), Text(printable(c.metric)),
            number_text(c.a.value if c.a else None), number_text(c.b.value if c.b else None),
            number_text(c.delta, signed=True), Text(word, style=_STYLE[c.direction]),
        )  # fmt: skip
    return table


def flip_table(comparison: Any, limit: int) -> Table | Text:
    flips = [*comparison.regressions, *comparison.fixes]
    title = (
        f"cases that flipped: {len(comparison.regressions)} pass → fail, "
        f"{len(comparison.fixes)} fail → pass; {comparison.outputs_changed} outputs changed"
    )
    if not flips:
        return Text(printable(title))
    if len(flips) > limit:
        title += f" (first {limit} shown; --limit to see more)"
    table = Table(title=title, title_justify="left")
    for column in ("model", "check", "case", "A → B", "prompt", "output A", "output B"):
        table.add_column(column)
    for f in flips[:limit]:
        word = Text("fail → pass", style="green") if f.fixed else Text("pass → FAIL", style="red")
        table.add_row(
            Text(printable(f.model)), Text(printable(f"{f.capability}/{f.check}")), Text(printable(f.case_id)), word,
            short_text(f.prompt), short_text(f.output_a, 32), short_text(f.output_b, 32),
        )  # fmt: skip
    return table
