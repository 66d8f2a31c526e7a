"""`harness plan SUITE`: each candidate's estimated peak memory, before anything trains.

Thin like cli.py: harness.plan._suite does the work, this prints it (rich table, JSON file).
Exit 0 when everything fits (or the device's memory is unknown), 1 when something does not.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from harness.outputs._console import make_console
from harness.plan import Breakdown, human_bytes


@click.command()
@click.argument("suite", type=click.Path(path_type=Path))
@click.option(
    "--device",
    type=click.Choice(["cuda", "cpu"]),
    help="Device to plan for (default: cuda when one is visible, else cpu).",
)
@click.option(
    "--dtype",
    type=click.Choice(["float32", "bfloat16", "float16"]),
    help="Evaluation weights dtype (default: float32 on cpu, bfloat16 on cuda). On cuda it also "
    "says whether the GPU has bf16 (float32/float16: it has not), which decides a candidate's "
    "`precision: auto` as in training.",
)
@click.option(
    "--memory", metavar="SIZE", help="Plan for this much memory (e.g. 80GiB) instead of measuring."
)
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the breakdown as JSON.",
)  # fmt: skip
@click.option("--base", "base_override", metavar="MODEL", help="Plan for this base instead.")
def plan(
    suite: Path,
    device: str | None,
    dtype: str | None,
    memory: str | None,
    json_path: Path | None,
    base_override: str | None,
) -> None:
    """Estimate each candidate's peak memory (weights, gradients, optimizer, activations, KV
    cache, reference model) and whether it fits the device. Loads no weights."""
    from harness.plan import plan_suite
    from harness.suite import load_suite

    loaded = load_suite(suite, base_override=base_override)
    result = plan_suite(loaded, device=device, dtype=dtype, memory=memory)
    console = make_console()
    console.print(plan_table(result))
    for row in result.rows:
        for note in row.notes:
            console.print(Text(f"note: {row.name}: {note}", style="dim"))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result.as_dict(), indent=2) + "\n", encoding="utf-8")
        click.echo(f"wrote {json_path}")
    if any(result.fits(row) is False for row in result.rows):
        raise click.exceptions.Exit(1)


def plan_table(result: object) -> Table:
    from harness.plan import SuitePlan

    assert isinstance(result, SuitePlan)
    device = result.device
    title = (
        f"memory plan of {result.suite} on {device.name} ({device.dtype}): {device.description}; "
        f"fits = peak + {human_bytes(device.allowance)} runtime <= available"
    )
    table = Table(title=Text(title), title_justify="left")
    for column in ("candidate", "backend", "seq", "weights", "grads", "optimizer",
                   "activations", "extra", "total", "eval total", "fits?"):  # fmt: skip
        table.add_column(column, justify="left" if column in {"candidate", "backend"} else "right")
    for row in result.rows:
        # Trained candidates show their training (what the columns are about); the evaluation
        # total beside it, and `fits?` judges the larger of the two.
        shown = row.training or row.evaluation
        fits = result.fits(row)
        verdict = Text(
            "?" if fits is None else "yes" if fits else "NO", style="green" if fits else "bold red"
        )
        table.add_row(
            Text(row.name), Text(row.backend or "(evaluate)"), str(row.seq_len or ""),
            *_cells(shown), human_bytes(row.evaluation.total), verdict,
        )  # fmt: skip
    return table


def _cells(breakdown: Breakdown) -> list[str | Text]:
    extra = sum(breakdown.extra.values())
    names = ", ".join(breakdown.extra)
    return [
        human_bytes(breakdown.weights),
        human_bytes(breakdown.gradients) if breakdown.gradients else "",
        human_bytes(breakdown.optimizer) if breakdown.optimizer else "",
        human_bytes(breakdown.activations),
        Text(f"{human_bytes(extra)} ({names})") if extra else "",
        Text(human_bytes(breakdown.total), style="bold"),
    ]
