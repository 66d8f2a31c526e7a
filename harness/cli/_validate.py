"""`harness validate SUITE` and `harness schema`: check a suite without running anything."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
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


@click.command()
def schema() -> None:
    """Print the JSON Schema of suite files."""
    from harness.suite import dump_schema

    click.echo(dump_schema())
