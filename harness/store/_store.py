"""The DuckDB results store: runs, models, cases, metrics, gates, loss curves, and the output cache.

DuckDB lets one process hold a database file at a time, and refuses a second one even read-only.
So this module never keeps a connection open between calls: every public method opens the file,
runs one transaction and closes it, retrying a bounded while when another process holds the lock.
That lets two `harness run` processes share one store, and `harness runs` work beside a running run.

The schema is versioned by ordered migration scripts recorded in `schema_migrations` (see
docs/store.md for every table and column).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import platform
import random
import re
import secrets
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import duckdb

from harness import __version__ as HARNESS_VERSION
from harness.core.errors import HarnessError
from harness.core.home import harness_home
from harness.core.records import CaseResult, GateResult, MetricValue, ModelRecord
from harness.core.registry import did_you_mean

__all__ = [
    "FINAL_STATUSES",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "CaseCounts",
    "RunSummary",
    "Store",
    "StoreBusyError",
    "StoreDamagedError",
    "StoredRun",
    "open_store",
    "redact_secrets",
]

# Ordered migrations: (version, SQL script). Append only; never edit a released one.
# JSON columns are VARCHAR holding JSON text: no dependency on DuckDB's json extension loading.
MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE runs (
            id               VARCHAR PRIMARY KEY,
            suite_name       VARCHAR NOT NULL,
            suite_path       VARCHAR,
            suite_text       VARCHAR,
            suite_hash       VARCHAR,
            config           VARCHAR,
            harness_version  VARCHAR,
            library_versions VARCHAR,
            host             VARCHAR,
            pid              INTEGER,
            started_at       TIMESTAMP NOT NULL,
            finished_at      TIMESTAMP,
            status           VARCHAR NOT NULL,
            exit_code        INTEGER
        );
        CREATE TABLE models (
            run_id      VARCHAR NOT NULL,
            name        VARCHAR NOT NULL,
            seq         INTEGER NOT NULL,
            role        VARCHAR NOT NULL,
            reference   VARCHAR NOT NULL,
            fingerprint VARCHAR,
            status      VARCHAR NOT NULL,
            error       VARCHAR,
            info        VARCHAR,
            recorded_at TIMESTAMP NOT NULL,
            PRIMARY KEY (run_id, name)
        );
        CREATE TABLE cases (
            run_id     VARCHAR NOT NULL,
            model_name VARCHAR NOT NULL,
            seq        INTEGER NOT NULL,
            capability VARCHAR NOT NULL,
            check_name VARCHAR NOT NULL,
            case_id    VARCHAR NOT NULL,
            prompt     VARCHAR NOT NULL,
            expected   VARCHAR,
            output     VARCHAR NOT NULL,
            scores     VARCHAR NOT NULL,
            passed     BOOLEAN,
            details    VARCHAR NOT NULL
        );
        CREATE TABLE metrics (
            run_id     VARCHAR NOT NULL,
            model_name VARCHAR NOT NULL,
            seq        INTEGER NOT NULL,
            capability VARCHAR NOT NULL,
            metric     VARCHAR NOT NULL,
            value      DOUBLE,
            ci_low     DOUBLE,
            ci_high    DOUBLE,
            n          INTEGER NOT NULL
        );
        CREATE TABLE gates (
            run_id      VARCHAR NOT NULL,
            model_name  VARCHAR NOT NULL,
            seq         INTEGER NOT NULL,
            capability  VARCHAR NOT NULL,
            kind        VARCHAR NOT NULL,
            metric      VARCHAR NOT NULL,
            value       DOUBLE,
            base_value  DOUBLE,
            delta       DOUBLE,
            limit_value DOUBLE NOT NULL,
            passed      BOOLEAN NOT NULL,
            message     VARCHAR NOT NULL
        );
        CREATE TABLE loss_curves (
            run_id     VARCHAR NOT NULL,
            model_name VARCHAR NOT NULL,
            step       INTEGER NOT NULL,
            loss       DOUBLE
        );
        CREATE TABLE output_cache (
            kind       VARCHAR NOT NULL,
            key        VARCHAR NOT NULL,
            value      VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL,
            PRIMARY KEY (kind, key)
        );
        """,
    ),
    (
        2,
        # Paired-test evidence behind each gate verdict (method, p-value, bounds, minimum
        # detectable effect, flipped cases), as JSON.
        "ALTER TABLE gates ADD COLUMN details VARCHAR;",
    ),
    (
        3,
        # Named runs for `--baseline tag:NAME` (a tag names one run; tagging again moves it), and
        # the run whose stored results a `harness gate` run re-decided.
        """
        CREATE TABLE tags (
            name       VARCHAR PRIMARY KEY,
            run_id     VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL
        );
        ALTER TABLE runs ADD COLUMN source_run VARCHAR;
        """,
    ),
    (
        4,
        # Which model (harness version and weights fingerprint) an output was cached for, so a run
        # reads all of a model's outputs in one query (Store.get_scope). No index: a scan of 200k
        # rows takes ~3 ms, and an index on it made INSERT OR REPLACE ~3x slower.
        "ALTER TABLE output_cache ADD COLUMN scope VARCHAR;",
    ),
    (
        5,
        # Three gate outcomes: pass, fail, inconclusive (too few cases to tell). `passed` stays,
        # true for a pass only; gates recorded before this had two outcomes.
        """
        ALTER TABLE gates ADD COLUMN outcome VARCHAR;
        UPDATE gates SET outcome = CASE WHEN passed THEN 'pass' ELSE 'fail' END;
        """,
    ),
    (
        6,
        # Which way each metric points, stored with it so history and compare never re-read the
        # suite or guess from the name. Rows written before this: the one built-in check whose
        # metrics point down at schema 5 is `perplexity`, whose metric names are these three.
        """
        ALTER TABLE metrics ADD COLUMN lower_is_better BOOLEAN;
        UPDATE metrics SET lower_is_better = regexp_matches(
            metric, '\\.(perplexity|word_perplexity|byte_perplexity)$'
        );
        """,
    ),
]
SCHEMA_VERSION: int = MIGRATIONS[-1][0]

FINAL_STATUSES = ("passed", "inconclusive", "regressed", "error")
_LIBRARIES = (
    "torch",
    "transformers",
    "tokenizers",
    "peft",
    "trl",
    "accelerate",
    "datasets",
    "bitsandbytes",
    "lm_eval",
    "evaluate",
    "duckdb",
    "numpy",
)
_LOCK_PATTERN = re.compile(r"could not set lock|conflicting lock", re.IGNORECASE)
# What DuckDB says when a file's blocks cannot be read back.
_DAMAGE_PATTERN = re.compile(
    r"could not read enough bytes|corrupt|checksum|not a valid duckdb|failed to read|"
    r"serialization error|invalid (block|database)",
    re.IGNORECASE,
)
_PID_PATTERN = re.compile(r"\(PID (\d+)\)")
_REDACTED = "***"
_TAG_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,99}")


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


@dataclass(frozen=True)
class CaseCounts:
    """A model's case count in a run, and how they came out (passed=None counts as neither)."""

    total: int
    passed: int
    failed: int


@dataclass(frozen=True)
class RunSummary:
    """One row of `harness runs`."""

    id: str
    suite_name: str
    suite_path: str | None
    suite_hash: str | None
    # running / passed / inconclusive / regressed / error, or 'interrupted' (running, writer gone)
    status: str
    exit_code: int | None
    started_at: datetime  # UTC
    finished_at: datetime | None  # UTC
    host: str | None
    pid: int | None
    models: tuple[str, ...]
    gates_passed: int
    gates_failed: int
    gates_inconclusive: int = 0

    @property
    def duration_s(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class StoredRun:
    """Everything stored about one run except its cases (see `Store.load_cases`)."""

    summary: RunSummary
    suite_text: str | None
    config: dict[str, Any]
    harness_version: str | None
    library_versions: dict[str, str]
    models: tuple[ModelRecord, ...]  # in the order they were first recorded
    metrics: dict[str, tuple[MetricValue, ...]]  # model name -> metrics
    gates: dict[str, tuple[GateResult, ...]]  # model name -> gate verdicts
    case_counts: dict[str, CaseCounts]  # model name -> counts
    loss_curves: dict[str, tuple[tuple[int, float], ...]]  # model name -> (step, loss)

    @property
    def id(self) -> str:
        return self.summary.id

    @property
    def status(self) -> str:
        return self.summary.status

    def model(self, name: str) -> ModelRecord:
        """The model called `name` in this run; KeyError if there is none."""
        for record in self.models:
            if record.name == name:
                return record
        raise KeyError(name)


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
        """Open the store at `path` and apply pending migrations.

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
        if not self.path.exists():
            if not create:
                raise HarnessError(
                    f"no results store at {self.path}: run `harness run SUITE` first, or point "
                    "--db / HARNESS_DB at the store"
                )
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif for_writing:
            self._check_intact()
        with self._connection() as con:
            _migrate(con, self.path)

    # ----------------------------------------------------------------- connection handling

    @contextmanager
    def _connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the file (waiting for the lock), yield the connection, close it whatever happens.

        A read that meets a damaged block is a StoreDamagedError naming the file."""
        con = self._connect()
        try:
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
        for (outputs of other suites, of prompts since changed).
        """
        with self._transaction() as con:
            rows = con.execute(
                "SELECT kind, key, value FROM output_cache WHERE scope = ?", [scope]
            ).fetchall()
        return {(kind, key): value for kind, key, value in rows}

    # ----------------------------------------------------------------- reading

    def list_runs(self, *, suite: str | None = None, limit: int = 50) -> list[RunSummary]:
        """The newest `limit` runs, newest first, optionally only those of suite `suite`."""
        where, params = ("WHERE r.suite_name = ?", [suite]) if suite is not None else ("", [])
        with self._transaction() as con:
            sql = f"{_SUMMARY_SQL} {where} ORDER BY r.id DESC LIMIT ?"
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
                row = con.execute("SELECT max(id) FROM runs").fetchone()
                if row is None or row[0] is None:
                    raise HarnessError(f"no runs in {self.path} yet: run `harness run SUITE` first")
                return str(row[0])
            matches = [
                r[0]
                for r in con.execute(
                    "SELECT id FROM runs WHERE starts_with(id, ?) ORDER BY id DESC", [ref]
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
                for r in con.execute("SELECT id FROM runs ORDER BY id DESC LIMIT 10").fetchall()
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


# --------------------------------------------------------------------- integrity


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
        self.file.parent.mkdir(parents=True, exist_ok=True)
        scratch = self.file.with_suffix(f".tmp-{os.getpid()}")
        scratch.write_text(json.dumps(state), encoding="utf-8")
        os.replace(scratch, self.file)


def _intact_memo(path: Path) -> _IntactMemo:

    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:24]
    return _IntactMemo(harness_home() / "stores" / f"{key}.json")


# --------------------------------------------------------------------- migrations


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


def _migrate(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Apply the migrations this file lacks, in order, each in its own transaction.

    Refuses a file whose newest applied migration is newer than this harness knows.
    """
    with _transaction(con):
        con.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, applied_at TIMESTAMP NOT NULL)"
        )
        applied = {r[0] for r in con.execute("SELECT version FROM schema_migrations").fetchall()}
    newest = max(applied, default=0)
    if newest > SCHEMA_VERSION:
        raise HarnessError(
            f"results store {path} has schema version {newest}, written by a newer harness; "
            f"this harness ({HARNESS_VERSION}) knows up to schema version {SCHEMA_VERSION}. "
            "Upgrade harness, or point --db / HARNESS_DB at another file."
        )
    for version, script in MIGRATIONS:
        if version not in applied:
            with _transaction(con):
                con.execute(script)
                con.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                    [version, _now()],
                )


# --------------------------------------------------------------------- writing helpers


def _new_run_id(con: duckdb.DuckDBPyConnection, started: datetime) -> str:
    """A fresh id: UTC start time (so ids sort by time) plus 4 random hex digits."""
    while True:
        run_id = f"{started:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
        if _scalar(con, "SELECT count(*) FROM runs WHERE id = ?", [run_id]) == 0:
            return run_id


def _require_run(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    if _scalar(con, "SELECT count(*) FROM runs WHERE id = ?", [run_id]) == 0:
        raise HarnessError(f"no run {run_id!r} in the results store")


def _delete_for_model(
    con: duckdb.DuckDBPyConnection, tables: Sequence[str], run_id: str, model_name: str
) -> None:
    for table in tables:
        sql = f"DELETE FROM {table} WHERE run_id = ? AND model_name = ?"
        con.execute(sql, [run_id, model_name])


def _insert_cases(
    con: duckdb.DuckDBPyConnection, run_id: str, model_name: str, cases: list[CaseResult]
) -> None:
    _insert_columns(
        con,
        "cases",
        {"run_id": run_id, "model_name": model_name},
        [
            ("seq", "INTEGER", list(range(len(cases)))),
            ("capability", "VARCHAR", [c.capability for c in cases]),
            ("check_name", "VARCHAR", [c.check for c in cases]),
            ("case_id", "VARCHAR", [c.case_id for c in cases]),
            ("prompt", "VARCHAR", [c.prompt for c in cases]),
            ("expected", "VARCHAR", [c.expected for c in cases]),
            ("output", "VARCHAR", [c.output for c in cases]),
            ("scores", "VARCHAR", [_dumps(c.scores) for c in cases]),
            ("passed", "BOOLEAN", [c.passed for c in cases]),
            ("details", "VARCHAR", [_dumps(c.details) for c in cases]),
        ],
    )


def _insert_metrics(
    con: duckdb.DuckDBPyConnection, run_id: str, model_name: str, metrics: list[MetricValue]
) -> None:
    _insert_columns(
        con,
        "metrics",
        {"run_id": run_id, "model_name": model_name},
        [
            ("seq", "INTEGER", list(range(len(metrics)))),
            ("capability", "VARCHAR", [m.capability for m in metrics]),
            ("metric", "VARCHAR", [m.metric for m in metrics]),
            ("value", "DOUBLE", [m.value for m in metrics]),
            ("ci_low", "DOUBLE", [m.ci_low for m in metrics]),
            ("ci_high", "DOUBLE", [m.ci_high for m in metrics]),
            ("n", "INTEGER", [m.n for m in metrics]),
            ("lower_is_better", "BOOLEAN", [m.lower_is_better for m in metrics]),
        ],
    )


def _insert_columns(
    con: duckdb.DuckDBPyConnection,
    table: str,
    constants: dict[str, Any],
    columns: list[tuple[str, str, list[Any]]],
) -> None:
    """Insert many rows at once: constant columns, then one list parameter per (name, type, values).

    Zipping unnested lists in one SELECT is ~20x faster than executemany (10k cases in ~0.3 s) and
    needs no pandas/pyarrow import.
    """
    if not columns or not columns[0][2]:
        return
    names = [*constants, *(name for name, _, _ in columns)]
    selects = ["?"] * len(constants) + [f"unnest(?::{sql_type}[])" for _, sql_type, _ in columns]
    params = [*constants.values(), *(values for _, _, values in columns)]
    con.execute(
        f"INSERT INTO {table} ({', '.join(names)}) SELECT {', '.join(selects)}",
        params,
    )


# --------------------------------------------------------------------- reading helpers

_SUMMARY_SQL = """
SELECT r.id, r.suite_name, r.suite_path, r.suite_hash, r.status, r.exit_code, r.started_at,
       r.finished_at, r.host, r.pid,
       (SELECT list(m.name ORDER BY m.seq) FROM models m WHERE m.run_id = r.id),
       (SELECT count(*) FILTER (WHERE g.outcome = 'pass') FROM gates g WHERE g.run_id = r.id),
       (SELECT count(*) FILTER (WHERE g.outcome = 'fail') FROM gates g WHERE g.run_id = r.id),
       (SELECT count(*) FILTER (WHERE g.outcome = 'inconclusive') FROM gates g
        WHERE g.run_id = r.id)
FROM runs r
"""


def _summary(row: tuple[Any, ...]) -> RunSummary:
    status = row[4]
    if status == "running" and not _writer_alive(row[8], row[9]):
        status = "interrupted"
    return RunSummary(
        id=row[0],
        suite_name=row[1],
        suite_path=row[2],
        suite_hash=row[3],
        status=status,
        exit_code=row[5],
        started_at=_utc(row[6]),
        finished_at=_utc(row[7]) if row[7] is not None else None,
        host=row[8],
        pid=row[9],
        models=tuple(row[10] or ()),
        gates_passed=int(row[11] or 0),
        gates_failed=int(row[12] or 0),
        gates_inconclusive=int(row[13] or 0),
    )


def _writer_alive(host: str | None, pid: int | None) -> bool:
    """Whether the process that began a run still exists (on another host we cannot tell: yes)."""
    if host != socket.gethostname() or pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _load_models(con: duckdb.DuckDBPyConnection, run_id: str) -> tuple[ModelRecord, ...]:
    rows = con.execute(
        "SELECT name, role, reference, fingerprint, status, error, info FROM models "
        "WHERE run_id = ? ORDER BY seq",
        [run_id],
    ).fetchall()
    return tuple(
        ModelRecord(
            name=r[0],
            role=r[1],
            reference=r[2],
            fingerprint=r[3],
            status=r[4],
            error=r[5],
            info=_loads(r[6]),
        )
        for r in rows
    )


def _load_metrics(
    con: duckdb.DuckDBPyConnection, run_id: str
) -> dict[str, tuple[MetricValue, ...]]:
    rows = con.execute(
        "SELECT model_name, capability, metric, value, ci_low, ci_high, n, lower_is_better "
        "FROM metrics "
        "WHERE run_id = ? ORDER BY model_name, seq",
        [run_id],
    ).fetchall()
    grouped: dict[str, list[MetricValue]] = {}
    for r in rows:
        metric = MetricValue(r[1], r[2], r[3], r[4], r[5], r[6], lower_is_better=bool(r[7]))
        grouped.setdefault(r[0], []).append(metric)
    return {name: tuple(values) for name, values in grouped.items()}


def _load_gates(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, tuple[GateResult, ...]]:
    rows = con.execute(
        "SELECT model_name, capability, kind, metric, value, base_value, delta, limit_value, "
        "outcome, message, details FROM gates WHERE run_id = ? ORDER BY model_name, seq",
        [run_id],
    ).fetchall()
    grouped: dict[str, list[GateResult]] = {}
    for r in rows:
        capability, kind, metric, value, base_value, delta, limit, outcome, message = r[1:10]
        details = json.loads(r[10]) if r[10] else {}
        gate = GateResult(
            capability, kind, metric, value, base_value, delta, limit, outcome, message, details
        )
        grouped.setdefault(r[0], []).append(gate)
    return {name: tuple(values) for name, values in grouped.items()}


def _load_case_counts(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, CaseCounts]:
    rows = con.execute(
        "SELECT model_name, count(*), count(*) FILTER (WHERE passed), "
        "count(*) FILTER (WHERE NOT passed) FROM cases WHERE run_id = ? GROUP BY model_name "
        "ORDER BY model_name",
        [run_id],
    ).fetchall()
    return {r[0]: CaseCounts(total=r[1], passed=r[2], failed=r[3]) for r in rows}


def _load_loss_curves(
    con: duckdb.DuckDBPyConnection, run_id: str
) -> dict[str, tuple[tuple[int, float], ...]]:
    rows = con.execute(
        "SELECT model_name, list(step ORDER BY step), list(loss ORDER BY step) FROM loss_curves "
        "WHERE run_id = ? GROUP BY model_name ORDER BY model_name",
        [run_id],
    ).fetchall()
    return {r[0]: tuple(zip(r[1], r[2], strict=True)) for r in rows}


def _case(r: Sequence[Any]) -> CaseResult:
    return CaseResult(
        capability=r[0],
        check=r[1],
        case_id=r[2],
        prompt=r[3],
        expected=r[4],
        output=r[5],
        scores=_loads(r[6]),
        passed=r[7],
        details=_loads(r[8]),
    )


def _scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> Any:
    row = con.execute(sql, params).fetchone()
    return None if row is None else row[0]


# --------------------------------------------------------------------- values


@functools.cache  # package metadata does not change within a process; the lookup costs ~60 ms
def library_versions() -> dict[str, str]:
    """Installed versions of the libraries results depend on, from package metadata (no imports)."""
    versions = {"python": platform.python_version(), "harness": HARNESS_VERSION}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


# Words that mark a secret. "token" alone is too broad for ML configs (max_new_tokens, pad_token,
# pad_token_id), so it counts only as a whole word not preceded by a special-token name.
_SECRET_WORDS = {
    "password",
    "passwd",
    "secret",
    "secrets",
    "authorization",
    "apikey",
    "credential",
    "credentials",
}
_SPECIAL_TOKENS = {"pad", "eos", "bos", "unk", "sep", "cls", "mask", "special", "additional"}


def _is_secret_key(key: str) -> bool:
    words = [w.lower() for w in re.findall(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])", key)]
    if _SECRET_WORDS.intersection(words):
        return True
    for i, word in enumerate(words):
        nxt = words[i + 1] if i + 1 < len(words) else ""
        if word == "api" and nxt == "key":
            return True
        if (
            word == "token"
            and nxt not in ("id", "ids")
            and (i == 0 or words[i - 1] not in _SPECIAL_TOKENS)
        ):
            return True
    return False


def redact_secrets(value: Any) -> Any:
    """A copy of `value` with every non-empty value under a secret-looking key replaced by "***"."""
    if isinstance(value, dict):
        return {
            k: _REDACTED if _is_secret_key(str(k)) and v not in (None, "") else redact_secrets(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_secrets(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    """Make pydantic models, dataclasses, numpy values, paths and sets storable, not fatal."""
    if callable(getattr(value, "model_dump", None)):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if hasattr(value, "tolist") and callable(value.tolist):
        return value.tolist()
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)


def _dumps(value: Any) -> str:
    # ensure_ascii=False keeps text readable in SQL; NaN/Infinity are written as Python's json does.
    return json.dumps(value, ensure_ascii=False, default=_json_default)


def _loads(text: str | None) -> Any:
    return {} if text is None else json.loads(text)


def _now() -> datetime:
    """Naive UTC: DuckDB TIMESTAMP has no zone, and TIMESTAMPTZ would need pytz to read back."""
    return datetime.now(UTC).replace(tzinfo=None)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC)


def _write_model(con: duckdb.DuckDBPyConnection, run_id: str, model: ModelRecord) -> None:
    row = con.execute(
        "SELECT seq FROM models WHERE run_id = ? AND name = ?", [run_id, model.name]
    ).fetchone()
    if row is None:
        seq = _scalar(con, "SELECT count(*) FROM models WHERE run_id = ?", [run_id])
    else:
        seq = row[0]
        con.execute("DELETE FROM models WHERE run_id = ? AND name = ?", [run_id, model.name])
    con.execute(
        "INSERT INTO models (run_id, name, seq, role, reference, fingerprint, status, error, "
        "info, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            run_id,
            model.name,
            seq,
            model.role,
            model.reference,
            model.fingerprint,
            model.status,
            model.error,
            _dumps(model.info),
            _now(),
        ],
    )


def _write_evaluation(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    model_name: str,
    cases: list[CaseResult],
    metrics: list[MetricValue],
) -> None:
    _delete_for_model(con, ("cases", "metrics"), run_id, model_name)
    _insert_cases(con, run_id, model_name, cases)
    _insert_metrics(con, run_id, model_name, metrics)


def _write_gates(
    con: duckdb.DuckDBPyConnection, run_id: str, model_name: str, gates: list[GateResult]
) -> None:
    _delete_for_model(con, ("gates",), run_id, model_name)
    _insert_columns(
        con,
        "gates",
        {"run_id": run_id, "model_name": model_name},
        [
            ("seq", "INTEGER", list(range(len(gates)))),
            ("capability", "VARCHAR", [g.capability for g in gates]),
            ("kind", "VARCHAR", [g.kind for g in gates]),
            ("metric", "VARCHAR", [g.metric for g in gates]),
            ("value", "DOUBLE", [g.value for g in gates]),
            ("base_value", "DOUBLE", [g.base_value for g in gates]),
            ("delta", "DOUBLE", [g.delta for g in gates]),
            ("limit_value", "DOUBLE", [g.limit for g in gates]),
            ("passed", "BOOLEAN", [g.passed for g in gates]),
            ("outcome", "VARCHAR", [g.outcome for g in gates]),
            ("message", "VARCHAR", [g.message for g in gates]),
            ("details", "VARCHAR", [_dumps(g.details) for g in gates]),
        ],
    )


def _write_loss_curve(
    con: duckdb.DuckDBPyConnection, run_id: str, model_name: str, points: list[tuple[int, float]]
) -> None:
    _delete_for_model(con, ("loss_curves",), run_id, model_name)
    _insert_columns(
        con,
        "loss_curves",
        {"run_id": run_id, "model_name": model_name},
        [
            ("step", "INTEGER", [int(s) for s, _ in points]),
            ("loss", "DOUBLE", [float(v) for _, v in points]),
        ],
    )
