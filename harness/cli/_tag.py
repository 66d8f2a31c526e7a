"""`harness tag RUN NAME`: name a run, for `--baseline tag:NAME`."""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli._common import db_option, existing_store
from harness.core.errors import HarnessError


@click.command()
@click.argument("run_ref", metavar="RUN", required=False)
@click.argument("name", required=False)
@click.option("--delete", "delete", metavar="NAME", help="Remove this tag instead.")
@db_option
def tag(run_ref: str | None, name: str | None, delete: str | None, db: Path | None) -> None:
    """Name a run (RUN NAME), e.g. `harness tag last prod`, for `--baseline tag:NAME`.

    Tagging another run with an existing name moves the tag. Without arguments: list the tags.
    """
    store = existing_store(db)
    if delete:
        store.delete_tag(delete)
        click.echo(f"deleted tag {delete}")
        return
    if run_ref is None:
        for tag_name, run_id, when in store.list_tags():
            click.echo(f"{tag_name}\t{run_id}\t{when:%Y-%m-%d %H:%M:%S} UTC")
        return
    if name is None:
        raise HarnessError("harness tag RUN NAME: give the tag's name too")
    run_id = store.resolve_run(run_ref)
    previous = store.tag_run(run_id, name)
    moved = f" (moved from {previous})" if previous else ""
    click.echo(f"tag {name} -> run {run_id}{moved}")
