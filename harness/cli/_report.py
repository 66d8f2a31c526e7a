"""`harness report [RUN]...`: the self-contained HTML report of stored runs, written to
reports/<run id>.html with the folder's index (or --out FILE)."""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli._common import db_option, reader

# ---------------------------------------------------------------------------------- report


@click.command()
@click.argument("runs", nargs=-1, metavar="[RUN]...")
@db_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the HTML file (default: reports/<run id>.html, and the folder's "
    "index.html is refreshed).",
)
def report(runs: tuple[str, ...], db: Path | None, out: Path | None) -> None:
    """Write the self-contained HTML report of runs (RUN: id, unique prefix or 'last'; default last)."""
    from harness.outputs.html import default_report_path, write_index, write_report

    store = reader(db)
    run_ids = [store.resolve_run(ref) for ref in runs or ("last",)]
    path = write_report(store, run_ids, out or default_report_path(run_ids))
    size = path.stat().st_size / 1024
    click.echo(f"wrote {path} ({len(run_ids)} run{'s' * (len(run_ids) > 1)}, {size:.0f} KiB)")
    if out is None:
        click.echo(f"wrote {write_index(store, path.parent)} (every report in {path.parent}/)")


def write_run_report(db: Path | None, run_id: str, path: Path) -> None:
    """What `harness run --report FILE` calls once the run is recorded."""
    from harness.outputs.html import write_report

    write_report(reader(db), [run_id], path)


# --------------------------------------------------------------------------------- history


# --------------------------------------------------------------------------------- compare
