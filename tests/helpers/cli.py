"""Run `harness` in a fresh interpreter, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def harness(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`harness *args` as a subprocess. GitHub Actions' variables are left out (a test that
    wants them passes them in `env`), so a run never annotates or writes a step summary by
    accident when the tests themselves run inside Actions."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")} | (env or {})
    command = [sys.executable, "-m", "harness.cli", *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=600, cwd=cwd, env=environ
    )
