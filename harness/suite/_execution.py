"""What `execution:` needs installed, checked when the suite loads (found without importing it):
the ray package for `engine: ray`, and the fsspec filesystem of a shared `artifacts:` URI."""

from __future__ import annotations

import importlib.util

RAY_INSTALL_HINT = "pip install 'harness[ray]'"


def ray_problem() -> str | None:
    """Why `engine: ray` cannot run here, or None."""
    if importlib.util.find_spec("ray") is None:
        return f"engine ray needs the ray package, which is not installed ({RAY_INSTALL_HINT})"
    return None


def location_problem(location: str) -> str | None:
    """Why a shared artifact location cannot be written from here, or None: its scheme must be
    one fsspec knows, with that filesystem's package installed (s3fs for s3://, ...)."""
    from fsspec.core import split_protocol  # deferred: only suites with `artifacts:` need it
    from fsspec.registry import known_implementations

    protocol, _ = split_protocol(location)
    if protocol in (None, "file", "local"):
        return None
    known = known_implementations.get(protocol)
    if known is None:
        return (
            f"{protocol}:// is not a filesystem fsspec knows (s3://, gs://, abfs://, file:// ...)"
        )
    package = known["class"].split(".")[0]
    if importlib.util.find_spec(package) is None:
        hint = known.get("err", f"install {package}")
        return f"{protocol}:// needs the {package} package, which is not installed ({hint})"
    return None
