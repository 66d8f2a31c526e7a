"""`harness history`: a suite's metrics across its recorded runs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from harness.cli._common import db_option, number_text, reader
from harness.core.errors import HarnessError
from harness.core.text import printable
from harness.outputs._console import make_console


@click.command()
@db_option
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

    store = reader(db)
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
            *[number_text(values.get(run_id)) for run_id in shown],
            Text(number_text(change, signed=True), style=style),
        )  # fmt: skip
    return table
