"""The CI options `run` and `gate` share (`--baseline`, `--fail-on`, `--strict`, `--json`,
`--junit`, `--summary`, `--report`) and what they write once a run is decided. The work is in
harness.evaluation (baselines), harness.run (regate) and harness.outputs (JUnit, Markdown,
annotations), imported inside the functions so `--help` stays light."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from harness.cli._common import FILE
from harness.core.errors import HarnessError
from harness.evaluation import GATE_KINDS, STRICT


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
        click.option("--json", "json_path", type=FILE, help="Write a JSON summary here."),
        click.option("--junit", "junit_path", type=FILE, help="Write JUnit XML here."),
        click.option(
            "--summary",
            metavar="FILE|github",
            help="Write a Markdown summary to FILE, or append it to $GITHUB_STEP_SUMMARY.",
        ),
        click.option("--report", "report_path", type=FILE, help="Write the HTML report here."),
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
    from harness.outputs._console import (
        checkpoints_table,
        make_console,
        methods_table,
        print_verdicts,
        quantized_table,
        summary_table,
    )

    out = make_console()
    out.print(summary_table(result))
    for table in (methods_table(result), checkpoints_table(result), quantized_table(result)):
        if table is not None:
            out.print(table)
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


# ------------------------------------------------------------------------------------ tags
