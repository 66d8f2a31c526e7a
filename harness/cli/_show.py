"""`harness show RUN`: one run's models, metrics and gate verdicts."""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli._common import db_option, reader
from harness.outputs._console import make_console


@click.command()
@click.argument("run_ref", metavar="RUN", default="last")
@db_option
def show(run_ref: str, db: Path | None) -> None:
    """Show one run's models, metrics and gate verdicts (RUN: id, unique prefix or 'last')."""
    from harness.outputs._show import render_run

    store = reader(db)
    make_console().print(*render_run(store.load_run(store.resolve_run(run_ref))))
