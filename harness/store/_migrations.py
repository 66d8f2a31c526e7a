"""The schema, as ordered migration scripts recorded in `schema_migrations` (docs/store.md lists every table and column)."""

from __future__ import annotations

from pathlib import Path

import duckdb

from harness import __version__ as HARNESS_VERSION
from harness.core.errors import HarnessError
from harness.store._connection import _transaction
from harness.store._values import _now

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
