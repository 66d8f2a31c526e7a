"""The DuckDB results store: runs, models, cases, metrics, gates, loss curves, and the output cache.

DuckDB lets one process hold a database file at a time, and refuses a second one even read-only.
So this module never keeps a connection open between calls: every public method opens the file,
runs one transaction and closes it, retrying a bounded while when another process holds the lock.
That lets two `harness run` processes share one store, and `harness runs` work beside a running run.

The schema is versioned by ordered migration scripts recorded in `schema_migrations` (see
docs/store.md for every table and column).
"""

from __future__ import annotations

import json
import os
import random
import re
import secrets
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from harness import __version__ as HARNESS_VERSION
from harness.core.errors import HarnessError
from harness.core.records import CaseResult, GateResult, MetricValue, ModelRecord
from harness.core.registry import did_you_mean
from harness.store._connection import (
    _DAMAGE_PATTERN,
    _LOCK_PATTERN,
    _PID_PATTERN,
    StoreBusyError,
    StoreDamagedError,
    _file_state,
    _intact_memo,
    _read_everything,
    _transaction,
)
from harness.store._migrations import _migrate
from harness.store._read import (
    _SUMMARY_SQL,
    FINAL_STATUSES,
    RunSummary,
    StoredRun,
    _case,
    _load_case_counts,
    _load_gates,
    _load_loss_curves,
    _load_metrics,
    _load_models,
    _require_run,
    _summary,
)
from harness.store._values import _dumps, _loads, _now, _scalar, _utc
from harness.store._write import (
    _write_evaluation,
    _write_gates,
    _write_loss_curve,
    _write_model,
    library_versions,
    redact_secrets,
)

_TAG_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,99}")


def open_store(db: str | Path | None, *, create: bool = True, for_writing: bool = True) -> Store:
    """The store a command names: `--db`, else `$HARNESS_DB`, else ./harness.duckdb."""
    path = Path(db) if db is not None else Path(os.environ.get("HARNESS_DB", "harness.duckdb"))
    return Store(path, create=create, for_writing=for_writing)


class Store:
    """The results store in one DuckDB file; safe to share between processes (see module doc)."""

    def __init__(
        self,
        path: str | Path,
        *,
        lock_timeout_s: float = 60.0,
        create: bool = True,
        for_writing: bool = True,
    ) -> None:
        """The store at `path`; pending migrations are applied when it is first opened.

        `create`: make the file when it is missing (else that is an error). `for_writing`: read
        the existing file whole once before the first write, so a damaged file is refused and
        never written to; the reading commands skip that, and damage is reported when a read
        meets it.
        Raises HarnessError when the file is missing (without `create`), damaged, written by a
        newer harness or not a DuckDB file; StoreBusyError when another process holds it for
        longer than `lock_timeout_s`.
        """
        self.path = Path(path)
        self.lock_timeout_s = lock_timeout_s
        self.opens = 0  # times this object opened the file: what tests and benchmarks count
        self._prefetched: dict[str, dict[tuple[str, str], str]] = {}  # see prefetch_scopes
        self._read_ahead: list[list[str]] = []  # see read_ahead
        if not self.path.exists():
            if not create:
                raise HarnessError(
                    f"no results store at {self.path}: run `harness run SUITE` first, or point "
                    "--db / HARNESS_DB at the store"
                )
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif for_writing:
            self._check_intact()
        # Migrations are applied on the first open, whatever it is for: a command then opens
        # the file once less (each open costs ~15 ms of a cached rerun's ~0.3 s).
        self._migrated = False

    # ----------------------------------------------------------------- connection handling

    @contextmanager
    def _connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the file (waiting for the lock), yield the connection, close it whatever happens.

        A read that meets a damaged block is a StoreDamagedError naming the file."""
        con = self._connect()
        try:
            if not self._migrated:
                _migrate(con, self.path)
                self._migrated = True
            if self._read_ahead:
                self._read_scopes(con, self._read_ahead.pop(0))
            yield con
        except duckdb.Error as exc:
            if _DAMAGE_PATTERN.search(str(exc)):
                raise StoreDamagedError(self.path, str(exc)) from exc
            raise
        finally:
            # Closing the last connection checkpoints the WAL into the file; a process killed
            # before that leaves the WAL, which DuckDB replays on the next open.
            con.close()

    def _check_intact(self) -> None:
        """Read every column of every table once, read-only, before this store is written to.

        Remembered by the file's size and time (and the WAL's), so an unchanged store, or one
        this harness wrote last (see `_remember_intact`), is not read again.
        """
        if _intact_memo(self.path).read() == _file_state(self.path):
            return
        try:
            con = duckdb.connect(str(self.path), read_only=True)
        except duckdb.Error as exc:
            if _LOCK_PATTERN.search(str(exc)):
                return  # another harness holds it; it checked it before its own writes
            if _DAMAGE_PATTERN.search(str(exc)) and "not a valid duckdb" not in str(exc).lower():
                raise StoreDamagedError(self.path, str(exc)) from exc
            raise HarnessError(f"cannot open results store {self.path}: {exc}") from exc
        try:
            _read_everything(con)
        except duckdb.Error as exc:
            raise StoreDamagedError(self.path, str(exc)) from exc
        finally:
            con.close()
        self._remember_intact()

    def _remember_intact(self) -> None:
        """The store as it is now was read whole, or written by this harness: no need to
        read it again until something else changes it."""
        with suppress(OSError):
            _intact_memo(self.path).write(_file_state(self.path))

    @contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the file, run one transaction, commit (or roll back on error), close."""
        with self._connection() as con, _transaction(con):
            yield con

    def _connect(self) -> duckdb.DuckDBPyConnection:
        """Connect, retrying with capped backoff while another process holds the lock."""
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.01
        while True:
            try:
                con = duckdb.connect(str(self.path))
            except duckdb.IOException as exc:
                if not _LOCK_PATTERN.search(str(exc)):
                    raise HarnessError(f"cannot open results store {self.path}: {exc}") from exc
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self._busy(exc) from exc
                # Jitter so two waiting processes do not retry in lockstep.
                time.sleep(min(delay * (0.5 + random.random()), remaining))
                delay = min(delay * 2, 0.5)
            except duckdb.Error as exc:
                raise HarnessError(f"cannot open results store {self.path}: {exc}") from exc
            else:
                self.opens += 1
                return con

    def _busy(self, exc: Exception) -> StoreBusyError:
        match = _PID_PATTERN.search(str(exc))
        holder = int(match.group(1)) if match else None
        return StoreBusyError(self.path, self.lock_timeout_s, holder, str(exc))

    # ----------------------------------------------------------------- writing

    def begin_run(
        self,
        *,
        suite_name: str,
        suite_path: str,
        suite_text: str,
        suite_hash: str,
        config: dict[str, Any],
        source_run: str | None = None,
    ) -> str:
        """Record a new run with status 'running' and return its id, e.g. "20261123-165012-3fa2".

        Also records the harness and library versions, this host and PID (to tell a live run
        from an interrupted one) and the start time. Secret-looking `config` keys are redacted.
        `source_run`: the stored run whose results this run re-gates (`harness gate`).
        """
        started = _now()
        with self._transaction() as con:
            run_id = _new_run_id(con, started)
            con.execute(
                "INSERT INTO runs (id, suite_name, suite_path, suite_text, suite_hash, config, "
                "harness_version, library_versions, host, pid, started_at, status, source_run) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', ?)",
                [
                    run_id,
                    suite_name,
                    suite_path,
                    suite_text,
                    suite_hash,
                    # Through JSON first so secrets inside pydantic models / dataclasses are seen.
                    _dumps(redact_secrets(json.loads(_dumps(config)))),
                    HARNESS_VERSION,
                    _dumps(dict(library_versions())),
                    socket.gethostname(),
                    os.getpid(),
                    started,
                    source_run,
                ],
            )
        return run_id

    def record_model(self, run_id: str, model: ModelRecord) -> None:
        """Insert or update the model `model.name` of run `run_id` (it keeps its first position)."""
        with self._transaction() as con:
            _require_run(con, run_id)
            _write_model(con, run_id, model)

    def record_model_result(
        self,
        run_id: str,
        model: ModelRecord,
        cases: list[CaseResult],
        metrics: list[MetricValue],
        gates: list[GateResult],
        loss_curve: list[tuple[int, float]] | None = None,
    ) -> None:
        """A model, its cases, metrics, gate verdicts (and loss curve, when given) in ONE
        transaction (one file open)."""
        with self._transaction() as con:
            _require_run(con, run_id)
            _write_model(con, run_id, model)
            _write_evaluation(con, run_id, model.name, cases, metrics)
            _write_gates(con, run_id, model.name, gates)
            if loss_curve is not None:
                _write_loss_curve(con, run_id, model.name, loss_curve)

    def record_evaluation(
        self,
        run_id: str,
        model_name: str,
        cases: list[CaseResult],
        metrics: list[MetricValue],
    ) -> None:
        """Store a model's cases and metrics in one transaction, replacing its earlier ones."""
        with self._transaction() as con:
            _require_run(con, run_id)
            _write_evaluation(con, run_id, model_name, cases, metrics)

    def record_gates(self, run_id: str, model_name: str, gates: list[GateResult]) -> None:
        """Store a model's gate verdicts, replacing its earlier ones in the run."""
        with self._transaction() as con:
            _require_run(con, run_id)
            _write_gates(con, run_id, model_name, gates)

    def record_loss_curve(
        self, run_id: str, model_name: str, points: list[tuple[int, float]]
    ) -> None:
        """Store a model's training loss curve as (step, loss) points, replacing an earlier one."""
        with self._transaction() as con:
            _require_run(con, run_id)
            _write_loss_curve(con, run_id, model_name, points)

    def finish_run(self, run_id: str, *, status: str, exit_code: int) -> None:
        """Mark a run finished with `status` (passed / inconclusive / regressed / error) and its
        exit code."""
        if status not in FINAL_STATUSES:
            raise ValueError(f"status must be one of {', '.join(FINAL_STATUSES)}, not {status!r}")
        with self._transaction() as con:
            _require_run(con, run_id)
            con.execute(
                "UPDATE runs SET status = ?, exit_code = ?, finished_at = ? WHERE id = ?",
                [status, exit_code, _now(), run_id],
            )
        self._remember_intact()

    # ----------------------------------------------------------------- output cache

    def get_many(self, kind: str, keys: list[str]) -> dict[str, Any]:
        """The cached values of `kind` for those `keys` that have one (missing keys are absent)."""
        if not keys:
            return {}
        with self._transaction() as con:
            rows = con.execute(
                "SELECT c.key, c.value FROM output_cache c "
                "JOIN (SELECT unnest(?::VARCHAR[]) AS key) k ON c.key = k.key WHERE c.kind = ?",
                [list(keys), kind],
            ).fetchall()
        return {key: json.loads(value) for key, value in rows}

    def put_many(self, kind: str, items: dict[str, Any], *, scope: str | None = None) -> None:
        """Cache JSON-serialisable values of `kind` by key, overwriting earlier values.

        `scope`: the model they were computed for, so `get_scope` can read them back at once.
        """
        if not items:
            return
        with self._transaction() as con:
            con.execute(
                "INSERT OR REPLACE INTO output_cache (kind, key, value, created_at, scope) "
                "SELECT ?, unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), ?, ?",
                [kind, list(items), [_dumps(v) for v in items.values()], _now(), scope],
            )

    def get_scope(self, scope: str) -> dict[tuple[str, str], str]:
        """Every cached entry put under `scope`, as JSON text by (kind, key), in one read.

        The text is left undecoded: a model's scope can hold many entries the caller never asks
        for (outputs of other suites, of prompts since changed). A scope read ahead by
        `prefetch_scopes` is handed out once, without opening the file.
        """
        if (prefetched := self._prefetched.pop(scope, None)) is not None:
            return prefetched
        with self._transaction() as con:
            rows = con.execute(
                "SELECT kind, key, value FROM output_cache WHERE scope = ?", [scope]
            ).fetchall()
        return {(kind, key): value for kind, key, value in rows}

    def prefetch_scopes(self, scopes: Sequence[str]) -> None:
        """Read several scopes in one open (each open costs ~15-20 ms), unless they were read
        ahead already; the next `get_scope` of each is served from what was read. An entry put
        since is not lost: the callers ask the store again for any key a scope lacked."""
        if all(scope in self._prefetched for scope in scopes):
            return
        with self._connection() as con:
            # the open may have read a group ahead already: read only what is still missing
            missing = [scope for scope in scopes if scope not in self._prefetched]
            if missing:
                self._read_scopes(con, missing)

    def read_ahead(self, groups: Sequence[Sequence[str]]) -> None:
        """Scopes wanted later, in groups (one per model, in the order they are needed): each
        later open of the file, whatever it is for, also reads the next group. So a fully cached
        run opens the file once per model instead of twice, holding one model's entries ahead."""
        self._read_ahead.extend(list(group) for group in groups if group)

    def _read_scopes(self, con: duckdb.DuckDBPyConnection, scopes: Sequence[str]) -> None:
        rows = con.execute(
            "SELECT scope, kind, key, value FROM output_cache "
            "WHERE scope IN (SELECT unnest(?::VARCHAR[]))",
            [list(scopes)],
        ).fetchall()
        read: dict[str, dict[tuple[str, str], str]] = {scope: {} for scope in scopes}
        for scope, kind, key, value in rows:
            read[scope][(kind, key)] = value
        self._prefetched.update(read)

    # ----------------------------------------------------------------- reading

    def list_runs(self, *, suite: str | None = None, limit: int = 50) -> list[RunSummary]:
        """The newest `limit` runs, newest first, optionally only those of suite `suite`."""
        where, params = ("WHERE r.suite_name = ?", [suite]) if suite is not None else ("", [])
        with self._transaction() as con:
            sql = f"{_SUMMARY_SQL} {where} ORDER BY r.started_at DESC, r.id DESC LIMIT ?"
            rows = con.execute(sql, [*params, limit]).fetchall()
        return [_summary(row) for row in rows]

    # ----------------------------------------------------------------- tags

    def tag_run(self, run_id: str, name: str) -> str | None:
        """Name run `run_id` `name` (moving the tag if it named another run); the previous run."""
        if not _TAG_PATTERN.fullmatch(name):
            raise HarnessError(
                f"tag {name!r}: use letters, digits and . _ - / (at most 100, no spaces)"
            )
        with self._transaction() as con:
            _require_run(con, run_id)
            previous = _scalar(con, "SELECT run_id FROM tags WHERE name = ?", [name])
            con.execute("DELETE FROM tags WHERE name = ?", [name])
            con.execute("INSERT INTO tags VALUES (?, ?, ?)", [name, run_id, _now()])
        self._remember_intact()
        return None if previous == run_id else previous

    def delete_tag(self, name: str) -> None:
        """Remove the tag `name`; HarnessError when there is none."""
        with self._transaction() as con:
            if _scalar(con, "SELECT count(*) FROM tags WHERE name = ?", [name]) == 0:
                raise HarnessError(f"no tag {name!r} in {self.path}")
            con.execute("DELETE FROM tags WHERE name = ?", [name])
        self._remember_intact()

    def list_tags(self) -> list[tuple[str, str, datetime]]:
        """Every tag as (name, run id, when it was set, UTC), by name."""
        with self._transaction() as con:
            rows = con.execute("SELECT name, run_id, created_at FROM tags ORDER BY name").fetchall()
        return [(r[0], r[1], _utc(r[2])) for r in rows]

    def last_passing_run(self, suite: str) -> str | None:
        """The newest finished run of `suite` whose gates all held (warn-only failures excluded)."""
        with self._transaction() as con:
            return _scalar(  # type: ignore[no-any-return]
                con,
                "SELECT id FROM runs r WHERE suite_name = ? AND status = 'passed' AND NOT EXISTS "
                "(SELECT 1 FROM gates g WHERE g.run_id = r.id AND NOT g.passed) "
                "ORDER BY started_at DESC, id DESC LIMIT 1",
                [suite],
            )

    def source_run(self, run_id: str) -> str | None:
        """The run whose stored results `run_id` re-gated (`harness gate`), else None."""
        with self._transaction() as con:
            return _scalar(con, "SELECT source_run FROM runs WHERE id = ?", [run_id])  # type: ignore[no-any-return]

    def resolve_run(self, ref: str) -> str:
        """The full id of the run `ref` names: a full id, a unique prefix, "last"/"latest", or
        `tag:NAME`."""
        if ref.startswith("tag:"):
            return self._resolve_tag(ref.removeprefix("tag:"))
        with self._transaction() as con:
            if ref in ("last", "latest"):
                # By start time: ids share their second when runs take less than one.
                row = con.execute(
                    "SELECT id FROM runs ORDER BY started_at DESC, id DESC LIMIT 1"
                ).fetchone()
                if row is None or row[0] is None:
                    raise HarnessError(f"no runs in {self.path} yet: run `harness run SUITE` first")
                return str(row[0])
            matches = [
                r[0]
                for r in con.execute(
                    "SELECT id FROM runs WHERE starts_with(id, ?) "
                    "ORDER BY started_at DESC, id DESC",
                    [ref],
                ).fetchall()
            ]
            if ref in matches:
                return ref
            if len(matches) == 1:
                return str(matches[0])
            if matches:
                raise HarnessError(f"run {ref!r} is ambiguous; it matches:", problems=matches[:20])
            recent = [
                r[0]
                for r in con.execute(
                    "SELECT id FROM runs ORDER BY started_at DESC, id DESC LIMIT 10"
                ).fetchall()
            ]
        hint = "recent runs:" if recent else f"there are no runs in {self.path} yet"
        raise HarnessError(f"no run {ref!r} in {self.path}; {hint}", problems=recent)

    def _resolve_tag(self, name: str) -> str:
        with self._transaction() as con:
            run_id = _scalar(con, "SELECT run_id FROM tags WHERE name = ?", [name])
            tags = [r[0] for r in con.execute("SELECT name FROM tags ORDER BY name").fetchall()]
        if run_id is None:
            known = f"tags: {', '.join(tags)}" if tags else "there are no tags yet"
            raise HarnessError(
                f"no tag {name!r} in {self.path}{did_you_mean(name, tags)}; {known} "
                "(set one with `harness tag RUN NAME`)"
            )
        return str(run_id)

    def load_run(self, run_id: str) -> StoredRun:
        """The run `run_id` with its models, metrics, gates, case counts and loss curves."""
        with self._transaction() as con:
            row = con.execute(f"{_SUMMARY_SQL} WHERE r.id = ?", [run_id]).fetchone()
            if row is None:
                raise HarnessError(f"no run {run_id!r} in {self.path}")
            extra = con.execute(
                "SELECT suite_text, config, harness_version, library_versions "
                "FROM runs WHERE id = ?",
                [run_id],
            ).fetchone()
            assert extra is not None  # the row above exists and we hold the only connection
            return StoredRun(
                summary=_summary(row),
                suite_text=extra[0],
                config=_loads(extra[1]),
                harness_version=extra[2],
                library_versions=_loads(extra[3]),
                models=_load_models(con, run_id),
                metrics=_load_metrics(con, run_id),
                gates=_load_gates(con, run_id),
                case_counts=_load_case_counts(con, run_id),
                loss_curves=_load_loss_curves(con, run_id),
            )

    def load_cases(
        self, run_id: str, model_name: str | None = None
    ) -> list[tuple[str, CaseResult]]:
        """The cases of a run as (model name, case), in model then evaluation order."""
        sql = (
            "SELECT c.model_name, c.capability, c.check_name, c.case_id, c.prompt, c.expected, "
            "c.output, c.scores, c.passed, c.details FROM cases c "
            "LEFT JOIN models m ON m.run_id = c.run_id AND m.name = c.model_name "
            "WHERE c.run_id = ? AND (? IS NULL OR c.model_name = ?) "
            "ORDER BY m.seq NULLS LAST, c.model_name, c.seq"
        )
        with self._transaction() as con:
            rows = con.execute(sql, [run_id, model_name, model_name]).fetchall()
        return [(r[0], _case(r[1:])) for r in rows]

    def cases_by_model(self, run_id: str) -> dict[str, list[CaseResult]]:
        """The cases of a run grouped by model name (what `stored_result` takes)."""
        grouped: dict[str, list[CaseResult]] = {}
        for name, case in self.load_cases(run_id):
            grouped.setdefault(name, []).append(case)
        return grouped


# --------------------------------------------------------------------- integrity


# --------------------------------------------------------------------- migrations


# --------------------------------------------------------------------- writing helpers


def _new_run_id(con: duckdb.DuckDBPyConnection, started: datetime) -> str:
    """A fresh id: UTC start time (so ids sort by time) plus 4 random hex digits."""
    while True:
        run_id = f"{started:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
        if _scalar(con, "SELECT count(*) FROM runs WHERE id = ?", [run_id]) == 0:
            return run_id


# --------------------------------------------------------------------- reading helpers


# --------------------------------------------------------------------- values
