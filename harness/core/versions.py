"""Installed versions of the libraries results depend on, read from package metadata (nothing is
imported), once per process: the lookup costs ~60 ms."""

from __future__ import annotations

import functools
from importlib import metadata


@functools.cache
def _installed(names: tuple[str, ...]) -> tuple[tuple[str, str | None], ...]:
    found: list[tuple[str, str | None]] = []
    for name in names:
        try:
            found.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            found.append((name, None))
    return tuple(found)


def installed_versions(names: tuple[str, ...]) -> dict[str, str | None]:
    """name -> installed version, None for a library that is not installed (a fresh dict)."""
    return dict(_installed(names))
