"""Which device trains which candidate, and when, with the local engine.

Candidates train one after another in the run's process, each at its turn; a candidate with
`accelerate:` trains in a child process launched over `num_processes` of the visible GPUs (or
processes splitting the CPU cores). Candidates side by side, on one machine's GPUs or a cluster's,
are Ray's job (`execution: {engine: ray}`, harness.run._ray).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from harness.core.device import gpu_possible
from harness.core.errors import HarnessError
from harness.suite import LoadedSuite
from harness.training._launch import Placement


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as ids a child's CUDA_VISIBLE_DEVICES understands (the
    parent's own CUDA_VISIBLE_DEVICES entries when it has them: children inherit its view)."""
    if not gpu_possible():
        return []
    import torch  # deferred: 1-2 s, paid only where a GPU may be

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [part.strip() for part in listed.split(",")] if listed else []
    return ids[:count] if len(ids) >= count else [str(i) for i in range(count)]


def launch_placement(processes: int, gpus: list[str], cores: int | None = None) -> Placement:
    """Where a launch of `processes` trains: that many of the `gpus`, or the CPU with the cores
    split between its processes."""
    if gpus and processes > len(gpus):
        raise HarnessError(
            f"accelerate.num_processes is {processes}, but only {len(gpus)} GPU(s) are visible"
        )
    if gpus:
        return Placement(tuple(gpus[:processes]))
    return Placement((), max(1, (cores or os.cpu_count() or 1) // processes))


def dependency_failed(name: str, exc: BaseException) -> HarnessError:
    """The error of a candidate whose dependency `name` (a reward model) failed to train."""
    return HarnessError(f"it needs {name}, whose training failed: {type(exc).__name__}: {exc}")


def in_dependency_order(suite: LoadedSuite, names: list[str]) -> list[str]:
    """`names` and the candidates they need (a reward model), each after what it needs."""
    ordered: list[str] = []

    def visit(name: str) -> None:
        for dependency in suite.trainings[name].depends_on:
            visit(dependency)
        if name not in ordered:
            ordered.append(name)

    for name in names:
        visit(name)
    return ordered


class Trainings:
    """The trained candidates of a run, each trained once, at its turn, after the candidates it
    depends on (a reward model)."""

    def __init__(
        self,
        suite: LoadedSuite,
        train: Callable[[str, Placement | None, dict[str, Any]], Any],
        *,
        gpus: list[str] | None = None,
    ) -> None:
        self.suite = suite
        # (candidate, placement or None for in-process, its dependencies' trained models)
        # -> TrainedModel
        self.train = train
        self.done: dict[str, Any] = {}  # a trained model, or its training's exception
        self.gpus = gpus

    def result(self, name: str) -> Any:
        """The candidate's trained model; its training's error otherwise. Trained once per
        run: asked again (a merge of it, a candidate it rewards), the same."""
        if name not in self.done:
            try:
                self.done[name] = self.train(name, self._placement(name), self._dependencies(name))
            except Exception as exc:  # kept, so that each candidate needing it says so
                self.done[name] = exc
        found = self.done[name]
        if isinstance(found, Exception):
            raise found
        return found

    def _placement(self, name: str) -> Placement | None:
        """None (this process), or where a launch trains."""
        launch = self.suite.trainings[name].accelerate
        if launch is None:
            return None
        gpus = visible_gpus() if self.gpus is None else self.gpus
        return launch_placement(launch.num_processes, gpus)

    def _dependencies(self, name: str) -> dict[str, Any]:
        """The trained models `name` needs; an error naming a failed one."""
        found = {}
        for dependency in self.suite.trainings[name].depends_on:
            try:
                found[dependency] = self.result(dependency)
            except Exception as exc:
                raise dependency_failed(dependency, exc) from exc
        return found


__all__ = [
    "Trainings",
    "dependency_failed",
    "in_dependency_order",
    "launch_placement",
    "visible_gpus",
]
