"""The command line: parses arguments, calls the Python API, maps outcomes to exit codes.

Exit codes (SPEC.md): 0 every gate held; 1 a gate failed; 2 bad suite or command line (nothing
ran); 3 a model failed to load, train or evaluate (the others still ran and were recorded).
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path

import click
from rich.table import Table

from harness import __version__
from harness.cli._ci import CiOutputs, check_summary_target, ci_options, finish, make_gating
from harness.core.errors import HarnessError
from harness.core.text import terminal
from harness.outputs._console import make_console

DB_HELP = "DuckDB store (default: $HARNESS_DB, else ./harness.duckdb)."
db_option = click.option("--db", type=click.Path(dir_okay=False, path_type=Path), help=DB_HELP)


def _reader(db: Path | None):
    """The store a reading command names; it must exist, and is not written to."""
    from harness.store import open_store

    return open_store(db, create=False, for_writing=False)


def show_model_builds() -> None:
    """Building a built-in model takes tens of seconds: let its step/loss lines through."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[harness] %(message)s"))
    logger = logging.getLogger("harness.models")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def quiet_library_progress_bars() -> None:
    """Our progress display is the one to read; transformers' per-load bars only add noise, and
    a few library messages are harmless here (harness.core.noise)."""
    from harness.core.noise import quiet_harmless_messages

    quiet_harmless_messages()
    # Read by huggingface_hub and by transformers when they are first imported (later, and only
    # if a model must load): importing transformers here to switch it off would cost a second.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:  # imported already (the Python API): switch it off now
        sys.modules["transformers"].utils.logging.disable_progress_bar()


class HarnessGroup(click.Group):
    """A HarnessError becomes its message and exit 2, without a traceback. Any other exception
    is a run error, exit 3: Python's own exit status for a crash is 1, which a CI gate would
    mistake for a regression."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except HarnessError as exc:
            click.echo(f"error: {exc.render()}", err=True)
            sys.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, KeyboardInterrupt, SystemExit):
            raise
        except Exception:
            traceback.print_exc()
            click.echo("error: harness itself failed (above); exit 3", err=True)
            sys.exit(3)


@click.group(cls=HarnessGroup)
@click.version_option(__version__, prog_name="harness")
def main() -> None:
    """Evaluate fine-tuned language models against their base, and gate on regressions."""


@main.command()
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
@ci_options
def run(
    suite: Path,
    db: Path | None,
    only: tuple[str, ...],
    base_override: str | None,
    retrain: bool,
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
    from harness.outputs._console import ConsoleReporter, make_console
    from harness.run import run_suite, selected_candidates
    from harness.suite import load_suite

    loaded = load_suite(suite, base_override=base_override)
    selected = selected_candidates(loaded, only)  # a wrong --only is a usage error before any work
    check_summary_target(summary)
    names = candidate_names(loaded, selected)
    # A baseline is read from an existing store; only then is the store opened for writing, so
    # a bad argument (--baseline nosuchrun) creates or changes nothing.
    reader = _reader(db) if baseline else None
    gating = make_gating(reader, loaded, names, baseline, baseline_model, fail_on, strict)
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


@main.command()
@click.argument("suite", type=click.Path(path_type=Path))
def validate(suite: Path) -> None:
    """Check a suite file without running anything (exit 2 and every problem when it is wrong)."""
    from harness.suite import load_suite

    loaded = load_suite(suite)
    cases = sum(len(p.cases) for p in loaded.checks)
    capabilities = len(loaded.spec.capabilities)
    click.echo(
        f"{suite}: ok — {capabilities} capabilities, {len(loaded.checks)} checks, {cases} cases, {len(loaded.spec.candidates)} candidates"
    )


@main.command()
def schema() -> None:
    """Print the JSON Schema of suite files."""
    from harness.suite import dump_schema

    click.echo(dump_schema())


@main.command()
@db_option
@click.option("--suite", "suite_name", metavar="NAME", help="Only runs of this suite.")
@click.option("--limit", default=20, show_default=True, help="How many runs to list.")
def runs(db: Path | None, suite_name: str | None, limit: int) -> None:
    """List recorded runs, newest first."""
    summaries = _reader(db).list_runs(suite=suite_name, limit=limit)
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


@main.command()
@click.argument("run_ref", metavar="RUN", default="last")
@db_option
def show(run_ref: str, db: Path | None) -> None:
    """Show one run's models, metrics and gate verdicts (RUN: id, unique prefix or 'last')."""
    from harness.outputs._show import render_run

    store = _reader(db)
    make_console().print(*render_run(store.load_run(store.resolve_run(run_ref))))


from harness.cli._ci import register as register_ci  # noqa: E402  (gate, tag)
from harness.cli._plan import register as register_plan  # noqa: E402  (plan)
from harness.cli._report import register  # noqa: E402  (report, history, compare

register(main)
register_ci(main)
register_plan(main)
