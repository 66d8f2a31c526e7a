"""Run `harness` in a fresh interpreter, as a user would."""

from __future__ import annotations

import ast
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


HEAVY = ("torch", "transformers", "peft", "trl", "scipy", "lm_eval", "datasets")


def heavy_imports(
    argv: list[str], cwd: Path, heavy: tuple[str, ...] = HEAVY, exit_code: int | None = None
) -> list[str]:
    """Run `harness *argv` in a fresh interpreter; which of the `heavy` libraries it imported
    (and, given `exit_code`, that it exited with it)."""
    check = (
        f"    assert exit.code == {exit_code!r}, exit.code\n"
        if exit_code is not None
        else "    pass\n"
    )
    code = (
        "import sys\nfrom harness.cli import main\n"
        f"sys.argv = ['harness', *{argv!r}]\n"
        "try:\n    main()\nexcept SystemExit as exit:\n"
        + check
        + f"print('HEAVY', [m for m in {heavy!r} if m in sys.modules])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=300
    )
    assert "HEAVY" in result.stdout, result.stdout[-500:] + result.stderr[-2000:]
    return list(ast.literal_eval(result.stdout.rsplit("HEAVY", 1)[1].strip().splitlines()[0]))
