"""Plain values in and out of DuckDB: timestamps in UTC, JSON columns, one-value queries."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import duckdb


def _now() -> datetime:
    """Naive UTC: DuckDB TIMESTAMP has no zone, and TIMESTAMPTZ would need pytz to read back."""
    return datetime.now(UTC).replace(tzinfo=None)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC)


def _dumps(value: Any) -> str:
    # ensure_ascii=False keeps text readable in SQL; NaN/Infinity are written as Python's json does.
    return json.dumps(value, ensure_ascii=False, default=_json_default)


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


def _scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> Any:
    row = con.execute(sql, params).fetchone()
    return None if row is None else row[0]


def _loads(text: str | None) -> Any:
    return {} if text is None else json.loads(text)
