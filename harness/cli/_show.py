"""`harness show RUN`: one run's models, metrics and gate verdicts, and the verdicts as
`harness run` printed them; `--json` / `--summary` write a stored run's CI outputs afterwards."""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli._common import FILE, db_option, reader
from harness.outputs._console import make_console


@click.command()
@click.argument("run_ref", metavar="RUN", default="last")
@db_option
@click.option("--json", "json_path", type=FILE, help="Also write the run's JSON summary here.")
@click.option(
    "--summary",
    metavar="FILE|github",
    help="Also write the run's Markdown summary to FILE (github: $GITHUB_STEP_SUMMARY).",
)
def show(run_ref: str, db: Path | None, json_path: Path | None, summary: str | None) -> None:
    """Show one run's models, metrics and gate verdicts (RUN: id, unique prefix or 'last')."""
    from harness.evaluation import stored_result
    from harness.outputs._console import print_verdicts
    from harness.outputs._json import write_summary
    from harness.outputs._markdown import write_markdown
    from harness.outputs._show import render_run

    store = reader(db)
    run = store.load_run(store.resolve_run(run_ref))
    console = make_console()
    console.print(*render_run(run))
    # only the outputs that list flipped cases need the cases
    cases = store.cases_by_model(run.id) if json_path or summary else {}
    result = stored_result(run, cases)
    print_verdicts(console, result)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        write_summary(result, json_path)
    if summary:
        click.echo(f"summary: {write_markdown(result, summary)}", err=True)
