"""What the commands share: the --db option, opening the store, exit codes for errors, quiet
libraries, short cell texts."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import click
from rich.text import Text

from harness.core.errors import HarnessError
from harness.core.text import printable

DB_HELP = "DuckDB store (default: $HARNESS_DB, else ./harness.duckdb)."
FILE = click.Path(dir_okay=False, path_type=Path)
db_option = click.option("--db", type=FILE, help=DB_HELP)


def reader(db: Path | None) -> Any:
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


def existing_store(db: Path | None) -> Any:
    """The store `gate` and `tag` read and write: it must exist already."""
    from harness.store import open_store

    return open_store(db, create=False)


def number_text(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def short_text(text: str | None, limit: int = 48) -> Text:
    flat = " ".join((text or "").split())
    flat = printable(flat)
    return Text(flat if len(flat) <= limit else flat[: limit - 1] + "…")
