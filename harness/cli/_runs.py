"""`harness runs`: the recorded runs, newest first."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from harness.cli._common import db_option, reader
from harness.core.text import terminal
from harness.outputs._console import make_console


@click.command()
@db_option
@click.option("--suite", "suite_name", metavar="NAME", help="Only runs of this suite.")
@click.option("--limit", default=20, show_default=True, help="How many runs to list.")
def runs(db: Path | None, suite_name: str | None, limit: int) -> None:
    """List recorded runs, newest first."""
    summaries = reader(db).list_runs(suite=suite_name, limit=limit)
    table = Table()
    gate_counts = "gates pass/fail/inconclusive"
    for column in ("run", "suite", "started (UTC)", "status", "exit", "models", gate_counts):
        table.add_column(column)
    for item in summaries:
        table.add_row(
            item.id, terminal(item.suite_name), str(item.started_at)[:19], item.status,
            "" if item.exit_code is None else str(item.exit_code), terminal(", ".join(item.models)),
            f"{item.gates_passed}/{item.gates_failed}/{item.gates_inconclusive}",
        )  # fmt: skip
    make_console().print(table if summaries else "no runs recorded yet")
