"""Checkpoints while training: which weights to keep, and when to stop.

The run evaluates each checkpoint (a `Judge`, harness.run._checkpoints: the suite's checks on the
model in memory, gated against the base); this module keeps the record of every checkpoint, saves
the best passing one as it appears (`select: best-passing`), stops a training whose forgetting
gate failed on two checkpoints in a row (`stop_on: forgetting`) and, once training ends, puts the
selected weights where the artifact's model goes.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.backends import Checkpoint, CheckpointHook
from harness.core.errors import HarnessError
from harness.models import load_model
from harness.suite import Checkpoints
from harness.training._launch import is_main_process, report_checkpoint


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
    swapped: bool = False  # finish() replaced the last weights by an earlier checkpoint's

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
            self.swapped = True
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


# ---- a training in a child process -----------------------------------------------------------
# The child cannot evaluate (the base's results and the run's store are in the parent): its main
# process saves each checkpoint under its scratch directory and says so on stdout; the parent
# evaluates it with the tracker and writes the verdict beside it; the child reads it and, under
# `accelerate launch`, tells its other processes whether to stop.

VERDICT_SUFFIX = ".verdict.json"


def parent_hook(settings: Checkpoints, scratch: Path) -> CheckpointHook:
    """A child's hook: every checkpoint evaluated by the parent (see `answer_checkpoint`)."""

    def evaluate(checkpoint: Checkpoint) -> bool:
        stop = False
        if is_main_process():
            directory = scratch / ".checkpoints" / f"step-{checkpoint.step}"
            checkpoint.save(directory)
            report_checkpoint(checkpoint.step, checkpoint.total_steps, directory)
            stop = _await_verdict(directory)
        return _shared_by_every_process(stop)

    return CheckpointHook(settings.every, evaluate)


def _await_verdict(directory: Path) -> bool:
    verdict_file = directory.with_name(directory.name + VERDICT_SUFFIX)
    while not verdict_file.is_file():
        time.sleep(0.05)
    verdict = json.loads(verdict_file.read_text(encoding="utf-8"))
    verdict_file.unlink()
    if "error" in verdict:
        raise HarnessError(f"evaluating checkpoint {directory.name}: {verdict['error']}")
    return bool(verdict["stop"])


def _shared_by_every_process(stop: bool) -> bool:
    """The main process's decision, for every process of a launch (they stop together)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return stop
    shared = [stop]
    dist.broadcast_object_list(shared, src=0)
    return bool(shared[0])


def answer_checkpoint(tracker: CheckpointTracker, payload: dict[str, Any]) -> None:
    """The parent's side: load the checkpoint the child saved, evaluate it, write the verdict
    (or the error, so that the child stops instead of waiting)."""
    directory = Path(payload["dir"])
    verdict: dict[str, Any]
    try:
        loaded = load_model(str(directory))

        def keep(out: Path) -> None:
            shutil.copytree(directory, out)

        checkpoint = Checkpoint(
            payload["step"], payload["total"], loaded.model, loaded.tokenizer, keep
        )
        verdict = {"stop": tracker.evaluate(checkpoint)}
    except Exception as exc:  # said to the child, which fails the training with it
        verdict = {"error": f"{type(exc).__name__}: {exc}"}
    shutil.rmtree(directory, ignore_errors=True)
    target = directory.with_name(directory.name + VERDICT_SUFFIX)
    temporary = target.with_suffix(".tmp")
    temporary.write_text(json.dumps(verdict), encoding="utf-8")
    os.replace(temporary, target)  # the child never reads half a verdict


def timed_hook(hook: CheckpointHook | None) -> tuple[CheckpointHook | None, Callable[[], float]]:
    """`hook`, counting the seconds spent in it (not training time)."""
    spent = [0.0]
    if hook is None:
        return None, lambda: 0.0

    def evaluate(checkpoint: Checkpoint) -> bool:
        started = time.perf_counter()
        try:
            return hook.evaluate(checkpoint)
        finally:
            spent[0] += time.perf_counter() - started

    return CheckpointHook(hook.every, evaluate), lambda: spent[0]


__all__ = [
    "BEST",
    "CheckpointPoint",
    "CheckpointTracker",
    "Judge",
    "answer_checkpoint",
    "parent_hook",
    "timed_hook",
]
