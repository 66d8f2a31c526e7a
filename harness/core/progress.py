"""Where long work says what it is doing; the CLI shows it, the Python API stays silent."""

from __future__ import annotations


class Reporter:
    """Where a run says what it is doing; the CLI gives a rich one, the API a silent one."""

    def stage(self, model: str, stage: str, total: int | None = None) -> None:
        """A model enters a stage (loading, evaluating); `total` is its number of cases."""

    def advance(self, model: str, completed: float, *, batches: int = 0, tokens: int = 0) -> None:
        """`completed` cases of the current model's stage are done; `batches` forward batches
        were computed for them so far, generating `tokens` new tokens (cached cases cost none)."""

    def training(
        self, model: str, step: int, total: int, loss: float | None, phase: str = "training"
    ) -> None:
        """A step of a trained candidate's training (or of another `phase` of it: sampling)."""

    def note(self, model: str, text: str) -> None:
        """Something worth a line of its own (a checkpoint's verdict, an early stop)."""

    def done(self, model: str, verdict: str) -> None:
        """The model is finished."""
