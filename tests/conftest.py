"""Shared fixtures. Built models are cached under .pytest_cache so local reruns are fast; a fresh
clone (CI) builds them once per session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("HARNESS_HOME", str(REPO / ".pytest_cache" / "harness_home"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no machine of this project reaches a hub


@pytest.fixture(scope="session")
def harness_home() -> Path:
    return Path(os.environ["HARNESS_HOME"])


@pytest.fixture(scope="session")
def tiny_dir(harness_home: Path) -> Path:
    """The built-in tiny model's HF directory (built on first use)."""
    from harness.models.builtin import ensure_builtin

    return ensure_builtin("tiny")


@pytest.fixture(scope="session")
def chromium() -> str:
    found = next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p),
        None,
    )
    if found is None:
        reason = "chromium is not installed (apt-get install -y chromium)"
        if os.environ.get("HARNESS_REQUIRE_CHROMIUM") == "1":
            pytest.fail(f"{reason}, and HARNESS_REQUIRE_CHROMIUM=1 requires it")
        pytest.skip(f"{reason}; CI sets HARNESS_REQUIRE_CHROMIUM=1 to fail instead")
    return found
