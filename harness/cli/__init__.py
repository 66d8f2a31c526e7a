"""The command line (`harness`): parses arguments, calls the Python API, maps outcomes to exit
codes. One module per command (`_run.py` holds `harness run`); `_common.py` holds what they
share, `_ci.py` the CI outputs of `run` and `gate`. A command imports the rest of harness inside
its function, so `harness --help` loads none of it.

Exit codes (SPEC.md): 0 every gate held; 1 a gate failed; 2 bad suite or command line (nothing
ran); 3 a model failed to load, train or evaluate (the others still ran and were recorded).
"""

import gc

import click

from harness import __version__
from harness.cli._common import HarnessGroup
from harness.cli._compare import compare
from harness.cli._gate import gate
from harness.cli._history import history
from harness.cli._plan import plan
from harness.cli._report import report
from harness.cli._run import run
from harness.cli._runs import runs
from harness.cli._show import show
from harness.cli._tag import tag
from harness.cli._validate import schema, validate


@click.group(cls=HarnessGroup)
@click.version_option(__version__, prog_name="harness")
def main() -> None:
    """Evaluate fine-tuned language models against their base, and gate on regressions."""
    # What the imports made lives as long as the process: frozen, the garbage collector stops
    # scanning it again at every full collection (~10% of a fully cached rerun's time).
    gc.freeze()


for command in (run, validate, schema, runs, show, gate, tag, plan, report, history, compare):
    main.add_command(command)

__all__ = ["main"]
