"""`harness gate RUN`: decide a stored run's gates again (new limits, another baseline)."""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli._ci import (
    CiOutputs,
    check_summary_target,
    ci_options,
    finish,
    make_gating,
)
from harness.cli._common import db_option, existing_store
from harness.core.errors import HarnessError


@click.command()
@click.argument("run_ref", metavar="RUN")
@click.option(
    "--suite",
    "suite_path",
    type=click.Path(path_type=Path),
    help="The suite whose gates decide (default: the file the run was made from, as it is now).",
)
@db_option
@ci_options
def gate(
    run_ref: str,
    suite_path: Path | None,
    db: Path | None,
    baseline: str | None,
    baseline_model: str | None,
    fail_on: frozenset[str],
    strict: bool,
    json_path: Path | None,
    junit_path: Path | None,
    summary: str | None,
    report_path: Path | None,
) -> None:
    """Decide a stored run's gates again under the current suite file, without running models.

    The verdicts are recorded as a new run that refers to RUN (id, prefix, last or tag:NAME);
    exits 0/1/3 like `harness run`.
    """
    from harness.run import regate_run
    from harness.suite import load_suite

    check_summary_target(summary)
    store = existing_store(db)
    run_id = store.resolve_run(run_ref)
    stored = store.load_run(run_id)
    path = suite_path or Path(stored.summary.suite_path or "")
    if not path.is_file():
        raise HarnessError(
            f"run {run_id} was made from {path}, which is not there; pass --suite FILE"
        )
    loaded = load_suite(path, resolve_models=False)
    names = [m.name for m in stored.models if m.role == "candidate"]
    gating = make_gating(store, loaded, names, baseline, baseline_model, fail_on, strict)
    result = regate_run(store, run_id, loaded, gating)
    click.echo(f"gated run {run_id} again under {path}: new run {result.run_id}", err=True)
    finish(result, loaded, db, CiOutputs(json_path, junit_path, summary, report_path))
