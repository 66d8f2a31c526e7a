"""Opening the store file: lock and damage errors, transactions, and the once-per-change full read that proves a file intact."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from harness.core.errors import HarnessError
from harness.core.home import harness_home, write_json_atomically

_LOCK_PATTERN = re.compile(r"could not set lock|conflicting lock", re.IGNORECASE)


# What DuckDB says when a file's blocks cannot be read back.
_DAMAGE_PATTERN = re.compile(
    r"could not read enough bytes|corrupt|checksum|not a valid duckdb|failed to read|"
    r"serialization error|invalid (block|database)",
    re.IGNORECASE,
)


_PID_PATTERN = re.compile(r"\(PID (\d+)\)")


class StoreDamagedError(HarnessError):
    """The store file cannot be read whole (truncated, overwritten): refused, never written."""

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(
            f"results store {path} is damaged and cannot be read whole; harness will not write "
            "to it. Restore it from a backup, or point --db / HARNESS_DB at another file.",
            problems=[detail.strip().splitlines()[0] if detail.strip() else "unreadable"],
        )
        self.path = path


class StoreBusyError(HarnessError):
    """Another process still held the store file after the bounded retry."""

    def __init__(self, path: Path, waited_s: float, holder_pid: int | None, detail: str) -> None:
        holder = f"process {holder_pid}" if holder_pid is not None else "another process"
        super().__init__(
            f"results store {path} is busy: {holder} holds it (waited {waited_s:.1f} s). "
            "Wait for that run to finish and try again, "
            "or point --db / HARNESS_DB at another file.",
            problems=[detail],
        )
        self.path = path
        self.holder_pid = holder_pid


@contextmanager
def _transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """BEGIN ... COMMIT, or ROLLBACK if the body raises."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        # The body's error is the one worth reporting; a failed rollback must not hide it.
        with suppress(duckdb.Error):
            con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def _read_everything(con: duckdb.DuckDBPyConnection) -> None:
    """Make DuckDB read every block of every table (a truncated file fails here)."""
    tables = con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
    ).fetchall()
    for (table,) in tables:
        columns = con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table]
        ).fetchall()
        reads = ", ".join(f'max(length(CAST("{c}" AS VARCHAR)))' for (c,) in columns)
        con.execute(f'SELECT count(*), {reads} FROM "{table}"').fetchall()


def _file_state(path: Path) -> list[list[int]]:
    """Size and modification time of the store and its WAL: what would show a change."""
    state = []
    for candidate in (path, path.with_name(path.name + ".wal")):
        try:
            stat = candidate.stat()
        except OSError:
            state.append([-1, -1])
        else:
            state.append([stat.st_size, stat.st_mtime_ns])
    return state


@dataclass(frozen=True)
class _IntactMemo:
    """The file state at which a store was last known to be whole, under $HARNESS_HOME."""

    file: Path

    def read(self) -> Any:
        try:
            return json.loads(self.file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def write(self, state: list[list[int]]) -> None:
        write_json_atomically(self.file, state)


def _intact_memo(path: Path) -> _IntactMemo:

    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:24]
    return _IntactMemo(harness_home() / "stores" / f"{key}.json")
