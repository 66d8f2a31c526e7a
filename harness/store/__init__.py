"""The DuckDB results store: runs, models, cases, metrics, gates, loss curves, the output cache.

    from harness.store import Store
    store = Store("harness.duckdb")

Every call opens the file, runs one transaction and closes it (docs/store.md).
"""

from harness.store._store import (
    FINAL_STATUSES,
    MIGRATIONS,
    SCHEMA_VERSION,
    CaseCounts,
    RunSummary,
    Store,
    StoreBusyError,
    StoreDamagedError,
    StoredRun,
    open_store,
    redact_secrets,
)

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
