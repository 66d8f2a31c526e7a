"""`harness run SUITE`: evaluate (and train) the candidates, decide the gates, write CI outputs."""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli._ci import CiOutputs, check_summary_target, ci_options, finish, make_gating
from harness.cli._common import db_option, quiet_library_progress_bars, reader, show_model_builds
from harness.outputs._console import make_console


@click.command()
@click.argument("suite", type=click.Path(path_type=Path))
@db_option
@click.option(
    "--only", multiple=True, metavar="NAME", help="Evaluate only this candidate (repeatable)."
)
@click.option(
    "--base", "base_override", metavar="MODEL", help="Use this base model instead of the suite's."
)
@click.option(
    "--retrain", is_flag=True, help="Train candidates again instead of reusing artifacts."
)
@click.option(
    "--ray",
    "ray_address",
    metavar="ADDRESS",
    help="Train and evaluate on a Ray cluster: auto (the running one), ray://HOST:10001, or "
    "local (a Ray instance started for this run). Overrides the suite's `execution:`.",
)
@ci_options
def run(
    suite: Path,
    db: Path | None,
    only: tuple[str, ...],
    base_override: str | None,
    retrain: bool,
    ray_address: str | None,
    baseline: str | None,
    baseline_model: str | None,
    fail_on: frozenset[str],
    strict: bool,
    json_path: Path | None,
    junit_path: Path | None,
    summary: str | None,
    report_path: Path | None,
) -> None:
    """Evaluate the suite's candidates against its base model and decide the gates."""
    from harness.evaluation import candidate_names
    from harness.outputs._console import ConsoleReporter
    from harness.run import run_suite, selected_candidates
    from harness.suite import load_suite, ray_problem

    loaded = load_suite(suite, base_override=base_override)
    if ray_address is not None:
        if (problem := ray_problem()) is not None:
            raise click.UsageError(f"--ray: {problem}")
        loaded = loaded.on_ray(ray_address)
    selected = selected_candidates(loaded, only)  # a wrong --only is a usage error before any work
    check_summary_target(summary)
    names = candidate_names(loaded, selected)
    # A baseline is read from an existing store; only then is the store opened for writing, so
    # a bad argument (--baseline nosuchrun) creates or changes nothing.
    baseline_store = reader(db) if baseline else None
    gating = make_gating(baseline_store, loaded, names, baseline, baseline_model, fail_on, strict)
    from harness.store import open_store

    store = open_store(db)
    quiet_library_progress_bars()
    show_model_builds()
    console = make_console(stderr=True)
    reporter = ConsoleReporter(console)
    try:
        result = run_suite(
            loaded, store, only=only, reporter=reporter, retrain=retrain, gating=gating
        )
    finally:
        reporter.close()
    finish(result, loaded, db, CiOutputs(json_path, junit_path, summary, report_path))
