"""Checks and backends are found through one registry: built-ins by "module:attr" target, third
parties by entry point. A plugin that fails to load, or lacks what its protocol asks, is a
warning naming it, never a traceback that stops every run."""

from __future__ import annotations

import logging
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.backends import BACKENDS, MemoryProfile
from harness.core.errors import HarnessError
from harness.core.registry import Registry

GROUP = "harness_test.backends"


@pytest.fixture
def plugins(tmp_path: Path) -> Iterator[Path]:
    """A site directory with one installed distribution declaring three backend entry points."""
    (tmp_path / "third_party_backends.py").write_text(
        textwrap.dedent(
            """
            from harness.backends import BACKENDS
            GOOD = BACKENDS.get("lora")  # a complete backend object under another name
            class Half:
                name = "half"
                def train(self, request): ...
            HALF = Half()
            """
        )
    )
    dist = tmp_path / "third_party_backends-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: third-party-backends\nVersion: 1.0\n"
    )
    (dist / "entry_points.txt").write_text(
        f"[{GROUP}]\n"
        "good = third_party_backends:GOOD\n"
        "half = third_party_backends:HALF\n"
        "broken = third_party_backends_missing:BACKEND\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("third_party_backends", None)


def registry() -> Registry:
    return Registry("backend", GROUP, {}, required=BACKENDS.required)


def test_a_complete_plugin_is_found_by_its_entry_point(plugins: Path) -> None:
    found = registry()
    assert found.names() == ["broken", "good", "half"]
    assert found.get("good").trains_adapter(found.get("good").Config()) is True


def test_a_plugin_that_fails_to_load_is_a_warning_and_is_left_out(
    plugins: Path, caplog: pytest.LogCaptureFixture
) -> None:
    found = registry()
    with caplog.at_level(logging.WARNING, logger="harness.plugins"):
        loaded = dict(found.items())
    assert sorted(loaded) == ["good"]
    messages = "\n".join(r.getMessage() for r in caplog.records)
    assert "backend plugin 'broken'" in messages and "ModuleNotFoundError" in messages
    assert "backend plugin 'half'" in messages
    assert "lacks Config, needs_reward, required_fields, problems, trains_adapter" in messages
    with pytest.raises(HarnessError, match="unknown backend 'half'"):
        found.get("half")


def test_a_broken_builtin_is_an_error_not_a_warning() -> None:
    found = Registry("backend", GROUP, {"mine": "json:dumps"}, required=BACKENDS.required)
    with pytest.raises(TypeError, match="lacks"):
        found.get("mine")


def test_every_builtin_backend_answers_the_whole_protocol() -> None:
    for name, backend in BACKENDS.items():
        config = backend.Config()
        assert isinstance(backend.trains_adapter(config), bool), name
        assert isinstance(backend.memory_profile(config), MemoryProfile), name
