"""The one user-facing error type. The CLI catches it, prints it without a traceback, exits 2."""

from __future__ import annotations


class HarnessError(Exception):
    """Bad input from the user (suite, command line, model reference): nothing has run yet."""

    exit_code = 2

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        self.problems = problems or []
        super().__init__(message)

    def render(self) -> str:
        lines = [str(self)]
        lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)


class ModelNotFoundError(HarnessError):
    """A model reference that names nothing loadable (missing directory, unreachable hub id)."""
