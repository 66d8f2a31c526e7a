"""Where harness keeps what it builds and remembers: `$HARNESS_HOME`, default ~/.cache/harness."""

from __future__ import annotations

import os
from pathlib import Path


def harness_home() -> Path:
    """`$HARNESS_HOME`, default `~/.cache/harness`."""
    return Path(os.environ.get("HARNESS_HOME") or "~/.cache/harness").expanduser()
