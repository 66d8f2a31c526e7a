"""Where computed outputs persist: the store (read once per model) or memory."""

from __future__ import annotations

import json
from typing import Any, Protocol, runtime_checkable

import harness


def output_scope(fingerprint: str) -> str:
    """The store scope a model's computed outputs are filed under (a new harness version
    computes afresh)."""
    return f"{harness.__version__}:{fingerprint}"


class OutputCache(Protocol):
    """Where computed outputs persist; the DuckDB store implements this structurally."""

    def get_many(self, kind: str, keys: list[str]) -> dict[str, Any]: ...  # only the hits

    def put_many(self, kind: str, items: dict[str, Any]) -> None: ...  # JSON-serialisable values


@runtime_checkable
class ScopedCache(Protocol):
    """An `OutputCache` that files entries under a scope (a model) and reads a scope at once:
    the DuckDB store, whose every read opens its file (~13 ms)."""

    def get_many(self, kind: str, keys: list[str]) -> dict[str, Any]: ...

    def put_many(self, kind: str, items: dict[str, Any], *, scope: str | None = None) -> None: ...

    def get_scope(self, scope: str) -> dict[tuple[str, str], str]: ...  # JSON text by (kind, key)


class ModelCache:
    """One model's view of a `ScopedCache`: its entries read once, lookups served from memory.

    So an evaluation reads the store once per model instead of once per check. Keys not found
    there are still asked of the store, so entries written without this scope (before schema 4,
    or for another model: a judge's verdict on the same output) or by another process since are
    reused too; that costs a read only when something was missing.
    """

    def __init__(self, store: ScopedCache, scope: str) -> None:
        self.store = store
        self.scope = scope
        self._stored: dict[tuple[str, str], str] | None = None  # read on the first lookup
        self._known: dict[tuple[str, str], Any] = {}  # decoded, or written by this model

    def get_many(self, kind: str, keys: list[str]) -> dict[str, Any]:
        found = {k: v for k in keys if (v := self._lookup(kind, k)) is not _MISSING}
        missing = [k for k in keys if k not in found]
        if missing:
            fetched = self.store.get_many(kind, missing)
            self._known.update({(kind, k): v for k, v in fetched.items()})
            found.update(fetched)
        return found

    def put_many(self, kind: str, items: dict[str, Any]) -> None:
        self.store.put_many(kind, items, scope=self.scope)
        self._known.update({(kind, k): v for k, v in items.items()})

    def _lookup(self, kind: str, key: str) -> Any:
        if (kind, key) in self._known:
            return self._known[(kind, key)]
        if self._stored is None:
            self._stored = self.store.get_scope(self.scope)
        text = self._stored.get((kind, key))
        if text is None:
            return _MISSING
        value = self._known[(kind, key)] = json.loads(text)
        return value


_MISSING = object()


class DictCache:
    """In-memory `OutputCache`, for tests and benchmarks; counts lookups and writes."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], Any] = {}
        self.gets = 0
        self.puts = 0

    def get_many(self, kind: str, keys: list[str]) -> dict[str, Any]:
        self.gets += 1
        return {k: self.data[(kind, k)] for k in keys if (kind, k) in self.data}

    def put_many(self, kind: str, items: dict[str, Any]) -> None:
        self.puts += 1
        self.data.update({(kind, k): v for k, v in items.items()})
