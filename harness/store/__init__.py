"""The DuckDB results store: runs, models, cases, metrics, gates, loss curves, the output cache.

    from harness.store import Store
    store = Store("harness.duckdb")

Every call opens the file, runs one transaction and closes it (docs/store.md). `Store` is the one
public face; behind it: `_connection` (locks, transactions, damage), `_migrations` (the schema),
`_write` and `_read` (results in and out), `_store` (the `Store` and its output cache).
"""

from harness.store._connection import StoreBusyError, StoreDamagedError
from harness.store._migrations import MIGRATIONS, SCHEMA_VERSION
from harness.store._read import FINAL_STATUSES, CaseCounts, RunSummary, StoredRun
from harness.store._store import Store, open_store
from harness.store._write import library_versions, redact_secrets

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
    "library_versions",
    "open_store",
    "redact_secrets",
]
