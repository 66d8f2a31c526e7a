"""Stores written by an older harness: the schema as of a given migration, for upgrade tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from harness.store import MIGRATIONS


@contextmanager
def store_at_version(path: Path, version: int) -> Iterator[duckdb.DuckDBPyConnection]:
    """A new DuckDB file with migrations 1..`version` applied and recorded, as a harness of
    that schema would have left it; the caller adds its rows on the yielded connection."""
    with duckdb.connect(str(path)) as con:
        con.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMP)"
        )
        for number, script in MIGRATIONS[:version]:
            con.execute(script)
            con.execute("INSERT INTO schema_migrations VALUES (?, now()::TIMESTAMP)", [number])
        yield con
