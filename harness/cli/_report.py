"""`harness report`, `harness history` and `harness compare`: stored runs, looked at.

Thin like cli.py: each command reads the store, calls harness.outputs.html / harness.outputs._history, prints.
Every string from a suite, data or model goes into rich tables as `Text`, never as markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from harness.core.errors import HarnessError
from harness.core.text import printable
from harness.outputs._console import make_console

_DB_HELP = "DuckDB store (default: $HARNESS_DB, else ./harness.duckdb)."
_db_option = click.option("--db", type=click.Path(dir_okay=False, path_type=Path), help=_DB_HELP)
_STYLE = {"better": "green", "worse": "red", "same": "dim", "new": "cyan", "gone": "magenta"}
_VERDICT_STYLE = {"passed": "green", "regressed": "bold red", "error": "bold magenta"}


def _store(db: Path | None) -> Any:
    """The store `report`, `history` and `compare` read: it must exist, and is not written."""
    from harness.store import open_store

    return open_store(db, create=False, for_writing=False)


def _num(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _short(text: str | None, limit: int = 48) -> Text:
    flat = " ".join((text or "").split())
    flat = printable(flat)
    return Text(flat if len(flat) <= limit else flat[: limit - 1] + "…")


# ---------------------------------------------------------------------------------- report


@click.command()
@click.argument("runs", nargs=-1, metavar="[RUN]...")
@_db_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the HTML file (default: reports/<run id>.html, and the folder's "
    "index.html is refreshed).",
)
def report(runs: tuple[str, ...], db: Path | None, out: Path | None) -> None:
    """Write the self-contained HTML report of runs (RUN: id, unique prefix or 'last'; default last)."""
    from harness.outputs.html import default_report_path, write_index, write_report

    store = _store(db)
    run_ids = [store.resolve_run(ref) for ref in runs or ("last",)]
    path = write_report(store, run_ids, out or default_report_path(run_ids))
    size = path.stat().st_size / 1024
    click.echo(f"wrote {path} ({len(run_ids)} run{'s' * (len(run_ids) > 1)}, {size:.0f} KiB)")
    if out is None:
        click.echo(f"wrote {write_index(store, path.parent)} (every report in {path.parent}/)")


def write_run_report(db: Path | None, run_id: str, path: Path) -> None:
    """What `harness run --report FILE` calls once the run is recorded."""
    from harness.outputs.html import write_report

    write_report(_store(db), [run_id], path)


# --------------------------------------------------------------------------------- history


@click.command()
@_db_option
@click.option("--suite", "suite_name", metavar="NAME", help="The suite (default: the last run's).")
@click.option("--limit", default=20, show_default=True, help="How many recent runs.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write an HTML page with a trend chart per metric.",
)
def history(db: Path | None, suite_name: str | None, limit: int, out: Path | None) -> None:
    """Metrics of a suite across its recorded runs, oldest to newest."""
    from harness.outputs._history import metric_history
    from harness.outputs.html import history_runs, render_history

    store = _store(db)
    suite = suite_name or store.load_run(store.resolve_run("last")).summary.suite_name
    runs = history_runs(store, suite, limit)
    if not runs:
        raise HarnessError(f"no finished runs of suite {suite!r} in {store.path}")
    series = metric_history(runs)
    run_ids = [r.run_id for r in runs]
    make_console().print(history_table(suite, run_ids, series))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(render_history(suite, run_ids, series), encoding="utf-8")
        click.echo(f"wrote {out}")


_HISTORY_COLUMNS = 8


def history_table(suite: str, run_ids: Sequence[str], series: Sequence[Any]) -> Table:
    shown = list(run_ids[-_HISTORY_COLUMNS:])
    more = f" (last {len(shown)} of {len(run_ids)} runs)" if len(shown) < len(run_ids) else ""
    table = Table(title=Text(printable(f"history of {suite}{more}")), title_justify="left")
    for column in ("model", "capability", "metric"):
        table.add_column(column)
    for run_id in shown:
        table.add_column(run_id[4:15], justify="right")  # MMDD-HHMMSS of the run id
    table.add_column("change", justify="right")
    for s in series:
        values = {p.run_id: p.value for p in s.points}
        change = s.change
        style = "dim"
        if change is not None and abs(change) > 1e-9:
            better = (change < 0) if s.lower_is_better else (change > 0)
            style = "green" if better else "red"
        table.add_row(
            Text(printable(s.model)), Text(printable(s.capability)), Text(printable(s.metric)),
            *[_num(values.get(run_id)) for run_id in shown],
            Text(_num(change, signed=True), style=style),
        )  # fmt: skip
    return table


# --------------------------------------------------------------------------------- compare


@click.command()
@click.argument("run_a", metavar="RUN_A")
@click.argument("run_b", metavar="RUN_B")
@_db_option
@click.option("--limit", default=30, show_default=True, help="Most flipped cases to list.")
@click.option("--all", "show_all", is_flag=True, help="List unchanged metrics too.")
def compare(run_a: str, run_b: str, db: Path | None, limit: int, show_all: bool) -> None:
    """What changed from RUN_A to RUN_B: verdicts, every metric, every case that flipped."""
    from harness.outputs._history import compare_runs

    store = _store(db)
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
    cases: dict[str, list[Any]] = {}
    for model, case in store.load_cases(run_id):
        cases.setdefault(model, []).append(case)
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
            _num(c.a.value if c.a else None), _num(c.b.value if c.b else None),
            _num(c.delta, signed=True), Text(word, style=_STYLE[c.direction]),
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
            _short(f.prompt), _short(f.output_a, 32), _short(f.output_b, 32),
        )  # fmt: skip
    return table


def register(group: click.Group) -> None:
    """Add `report`, `history` and `compare` to the `harness` command group."""
    for command in (report, history, compare):
        group.add_command(command)
