"""The orchestrator: evaluate the base, train and evaluate each candidate, decide the gates,
record everything as it finishes; and `harness gate`, which decides a stored run again."""

from harness.run._regate import regate_run
from harness.run._runner import Gating, run_suite, selected_candidates

__all__ = ["Gating", "regate_run", "run_suite", "selected_candidates"]
