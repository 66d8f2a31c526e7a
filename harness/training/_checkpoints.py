"""Checkpoints while training: which weights to keep, and when to stop.

The run evaluates each checkpoint (a `Judge`, harness.run._checkpoints: the suite's checks on the
model in memory, gated against the base); this module keeps the record of every checkpoint, saves
the best passing one as it appears (`select: best-passing`), stops a training whose forgetting
gate failed on two checkpoints in a row (`stop_on: forgetting`) and, once training ends, puts the
selected weights where the artifact's model goes.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.backends import Checkpoint, CheckpointHook
from harness.suite import Checkpoints


@dataclass(frozen=True)
class CheckpointPoint:
    """One checkpoint's evaluation, as the training record keeps it."""

    step: int
    fingerprint: str
    # [{capability, metric, value, ci_low, ci_high, n}]
    metrics: list[dict[str, Any]]
    # [{capability, kind, metric, value, base_value, limit, outcome}]
    gates: list[dict[str, Any]]
    score: float | None  # the improve gate's metric, oriented so that higher is better
    seconds: float

    @property
    def passed(self) -> bool:
        """Every gate evaluated here passed (an inconclusive gate is not a pass)."""
        return bool(self.gates) and all(g["outcome"] == "pass" for g in self.gates)

    @property
    def forgot(self) -> bool:
        return any(g["kind"] == "forgetting" and g["outcome"] == "fail" for g in self.gates)


Judge = Callable[[Checkpoint], CheckpointPoint]
BEST = "best-checkpoint"


@dataclass
class CheckpointTracker:
    """Turns a judge into the backend's hook, and remembers what it decided."""

    settings: Checkpoints
    judge: Judge
    scratch: Path  # the artifact being built: the best checkpoint is saved beside its model
    points: list[CheckpointPoint] = field(default_factory=list)
    best: CheckpointPoint | None = None
    stop_reason: str | None = None
    total_steps: int | None = None  # as the trainer planned them

    def hook(self) -> CheckpointHook:
        return CheckpointHook(self.settings.every, self.evaluate)

    def evaluate(self, checkpoint: Checkpoint) -> bool:
        self.total_steps = checkpoint.total_steps
        point = self.judge(checkpoint)
        self.points.append(point)
        if self.settings.select == "best-passing" and point.passed and self._better(point):
            shutil.rmtree(self.scratch / BEST, ignore_errors=True)  # the previous best goes
            checkpoint.save(self.scratch / BEST)
            self.best = point
        return self._should_stop()

    def _better(self, point: CheckpointPoint) -> bool:
        """Better on the improve metric; ties (and no improve gate) keep the earlier step."""
        if self.best is None:
            return True
        if point.score is None or self.best.score is None:
            return False
        return point.score > self.best.score

    def _should_stop(self) -> bool:
        if self.settings.stop_on != "forgetting" or len(self.points) < 2:
            return False
        previous, last = self.points[-2:]
        if previous.forgot and last.forgot:
            self.stop_reason = f"a forgetting gate failed at steps {previous.step} and {last.step}"
            return True
        return False

    def finish(self, model_dir: Path) -> dict[str, Any]:
        """Put the selected weights in `model_dir`; the record of every checkpoint."""
        selected, note = self._selection()
        best_dir = self.scratch / BEST
        if selected is not None and selected is self.best and selected is not self.points[-1]:
            shutil.rmtree(model_dir)
            best_dir.rename(model_dir)
        shutil.rmtree(best_dir, ignore_errors=True)
        return {
            "settings": self.settings.key(),
            "points": [asdict(p) | {"passed": p.passed} for p in self.points],
            "total_steps": self.total_steps,
            "selected_step": selected.step if selected is not None else None,
            "selection": note,
            "stopped_at": self.points[-1].step if self.stop_reason else None,
            "stop_reason": self.stop_reason,
        }

    def _selection(self) -> tuple[CheckpointPoint | None, str]:
        last = self.points[-1] if self.points else None
        if self.settings.select == "last":
            return last, "last"
        if self.best is None:
            return last, "no checkpoint passed every gate; the last one is kept"
        return self.best, "best-passing"


__all__ = ["BEST", "CheckpointPoint", "CheckpointTracker", "Judge"]
