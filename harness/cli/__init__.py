"""The command line (`harness`): parses, calls the Python API, maps outcomes to exit codes."""

from harness.cli._main import main

__all__ = ["main"]
