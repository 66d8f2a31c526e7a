"""The CI side of the command line: `--baseline`, `--fail-on`, `--junit`, `--summary`, GitHub
annotations, and the `gate`, `tag` and `tags` commands.

Thin like cli.py: options are parsed here, the work is in harness.evaluation._baseline, harness.run._regate,
harness.outputs._junit, harness.outputs._markdown and harness.outputs._annotations (imported lazily: `--help` stays fast).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from harness.core.errors import HarnessError
from harness.evaluation import GATE_KINDS, STRICT

_PATH = click.Path(dir_okay=False, path_type=Path)
_DB_HELP = "DuckDB store (default: $HARNESS_DB, else ./harness.duckdb)."


def _store(db: Path | None) -> Any:
    """The store `gate` and `tag` read and write: it must exist already."""
    from harness.store import open_store

    return open_store(db, create=False)


def parse_fail_on(_ctx: Any, _param: Any, values: tuple[str, ...]) -> frozenset[str]:
    """`--fail-on forgetting,threshold` (repeatable; `all`, `none` and `inconclusive` too) ->
    gate kinds, with STRICT when inconclusive gates fail too."""
    kinds: set[str] = set()
    words = [w.strip() for value in values for w in value.split(",") if w.strip()]
    if not any(w in GATE_KINDS or w in ("all", "none") for w in words):
        words.append("all")  # `--fail-on inconclusive` alone keeps every gate kind deciding
    for word in words:
        if word == "all":
            kinds |= set(GATE_KINDS)
        elif word in GATE_KINDS or word == STRICT:
            kinds.add(word)
        elif word != "none":
            raise click.BadParameter(
                f"{word!r} is not a gate kind; use {', '.join(GATE_KINDS)}, all, none, "
                f"or {STRICT} (inconclusive gates fail too, as --strict)"
            )
    return frozenset(kinds)


@dataclass(frozen=True)
class CiOutputs:
    """Where the results go besides the terminal, as given on the command line."""

    json_path: Path | None
    junit_path: Path | None
    summary: str | None  # a file name, or "github" for $GITHUB_STEP_SUMMARY
    report_path: Path | None


def ci_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options `harness run` and `harness gate` share: baseline, fail-on and CI outputs."""
    options = [
        click.option(
            "--baseline",
            metavar="REF",
            help="Gate candidates against a stored run instead of the base: a run id, "
            "tag:NAME or last-pass (the last run of this suite whose gates all held).",
        ),
        click.option(
            "--baseline-model",
            metavar="NAME",
            help="The baseline run's model every candidate is compared with "
            "(default: the model of the candidate's own name).",
        ),
        click.option(
            "--fail-on",
            multiple=True,
            callback=parse_fail_on,
            metavar="KINDS",
            help="Gate kinds that fail the build, comma-separated: threshold, forgetting, "
            "improve (default: all). Failures of the others are reported as warnings. "
            "Add `inconclusive` to fail on gates too small to tell, as --strict does.",
        ),
        click.option(
            "--strict",
            is_flag=True,
            help="Inconclusive gates (too few cases to tell) fail the build too (exit 1); "
            "by default they warn and exit 0.",
        ),
        click.option("--json", "json_path", type=_PATH, help="Write a JSON summary here."),
        click.option("--junit", "junit_path", type=_PATH, help="Write JUnit XML here."),
        click.option(
            "--summary",
            metavar="FILE|github",
            help="Write a Markdown summary to FILE, or append it to $GITHUB_STEP_SUMMARY.",
        ),
        click.option("--report", "report_path", type=_PATH, help="Write the HTML report here."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def check_summary_target(summary: str | None) -> None:
    """A `--summary github` outside GitHub Actions is a usage error before anything runs."""
    if summary is not None:
        from harness.outputs._markdown import summary_destination

        summary_destination(summary)


def make_gating(
    store: Any,
    suite: Any,
    candidates: Sequence[str],
    baseline: str | None,
    baseline_model: str | None,
    fail_on: frozenset[str],
    strict: bool = False,
) -> Any:
    """The runner's Gating; resolving the baseline first, so a bad one is exit 2, nothing run."""
    from harness.evaluation import plan_baseline
    from harness.run import Gating

    if baseline_model and not baseline:
        raise HarnessError("--baseline-model needs --baseline REF")
    planned = (
        plan_baseline(store, baseline, suite, candidates, baseline_model) if baseline else None
    )
    return Gating(fail_on=fail_on | ({STRICT} if strict else set()), baseline=planned)


def finish(result: Any, suite: Any, db: Path | None, outputs: CiOutputs) -> None:
    """Print the tables and verdicts, write every requested output, annotate, exit."""
    from harness.outputs._console import make_console, methods_table, print_verdicts, summary_table

    out = make_console()
    out.print(summary_table(result))
    methods = methods_table(result)
    if methods is not None:
        out.print(methods)
    print_verdicts(out, result)
    _write_outputs(result, suite, db, outputs)
    from harness.outputs._annotations import under_github_actions, workflow_commands

    if under_github_actions():
        for line in workflow_commands(result):
            click.echo(line)
    sys.exit(result.exit_code)


def _write_outputs(result: Any, suite: Any, db: Path | None, outputs: CiOutputs) -> None:
    if outputs.json_path:
        from harness.outputs._json import write_summary

        outputs.json_path.parent.mkdir(parents=True, exist_ok=True)
        write_summary(result, outputs.json_path)
    if outputs.junit_path:
        from harness.outputs._junit import write_junit

        write_junit(result, list(suite.spec.capabilities), outputs.junit_path)
        click.echo(f"junit: {outputs.junit_path}", err=True)
    if outputs.summary:
        from harness.outputs._markdown import write_markdown

        click.echo(f"summary: {write_markdown(result, outputs.summary)}", err=True)
    if outputs.report_path:
        from harness.cli._report import write_run_report

        write_run_report(db, result.run_id, outputs.report_path)
        click.echo(f"report: {outputs.report_path}", err=True)


# ------------------------------------------------------------------------------------ gate


@click.command()
@click.argument("run_ref", metavar="RUN")
@click.option(
    "--suite",
    "suite_path",
    type=click.Path(path_type=Path),
    help="The suite whose gates decide (default: the file the run was made from, as it is now).",
)
@click.option("--db", type=_PATH, help=_DB_HELP)
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
    store = _store(db)
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


# ------------------------------------------------------------------------------------ tags


@click.command()
@click.argument("run_ref", metavar="RUN", required=False)
@click.argument("name", required=False)
@click.option("--delete", "delete", metavar="NAME", help="Remove this tag instead.")
@click.option("--db", type=_PATH, help=_DB_HELP)
def tag(run_ref: str | None, name: str | None, delete: str | None, db: Path | None) -> None:
    """Name a run (RUN NAME), e.g. `harness tag last prod`, for `--baseline tag:NAME`.

    Tagging another run with an existing name moves the tag. Without arguments: list the tags.
    """
    store = _store(db)
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


def register(group: click.Group) -> None:
    group.add_command(gate)
    group.add_command(tag)
