"""Where harness keeps what it builds and remembers: `$HARNESS_HOME`, default ~/.cache/harness."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def harness_home() -> Path:
    """`$HARNESS_HOME`, default `~/.cache/harness`."""
    return Path(os.environ.get("HARNESS_HOME") or "~/.cache/harness").expanduser()


def write_json_atomically(path: Path, value: Any) -> None:
    """Write `value` as JSON to `path` through a scratch file renamed into place, so a
    concurrent reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_suffix(f".tmp-{os.getpid()}")
    scratch.write_text(json.dumps(value), encoding="utf-8")
    os.replace(scratch, path)
