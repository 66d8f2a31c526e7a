"""Which device trains which candidate, and when.

With one device (a single GPU, or the CPU) candidates train one after another in this process,
each at its turn. With `training: {parallel: N}` or several visible GPUs (`parallel: auto`),
every trained candidate starts at once in the background, each in a child process on the GPU it
was given (the least loaded one), at most `parallel` at a time, while the main process evaluates
candidates in the suite's order as their trainings finish. A candidate with `accelerate:` takes
`num_processes` idle GPUs for itself. On the CPU, parallel children split the cores between them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from harness.core.device import gpu_possible
from harness.core.errors import HarnessError
from harness.suite import LoadedSuite
from harness.training._launch import Placement

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor


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


def parallel_slots(setting: int | str, gpu_count: int) -> int:
    """How many candidates train at once: `auto` is one per GPU, and 1 without a GPU."""
    if setting == "auto":
        return max(gpu_count, 1)
    return int(setting)


class DevicePool:
    """Hands out placements: at most `slots` children at once; a one-process candidate goes to
    the least loaded GPU, a launch of k processes waits for k idle GPUs."""

    def __init__(self, gpus: list[str], slots: int, cores: int | None = None) -> None:
        self.load = dict.fromkeys(gpus, 0)
        self.slots = slots
        self.cores = cores or os.cpu_count() or 1
        self.running = 0
        self.condition = threading.Condition()

    @contextmanager
    def placement(self, processes: int) -> Iterator[Placement]:
        if self.load and processes > len(self.load):
            raise HarnessError(
                f"accelerate.num_processes is {processes}, but only {len(self.load)} GPU(s) are visible"
            )
        with self.condition:
            self.condition.wait_for(lambda: self._fits(processes))
            gpus = self._take(processes)
        try:
            yield Placement(gpus, None if gpus else self._threads(processes))
        finally:
            with self.condition:
                self.running -= 1
                for gpu in gpus:
                    self.load[gpu] -= 1
                self.condition.notify_all()

    def _fits(self, processes: int) -> bool:
        if self.running >= self.slots:
            return False
        idle = [gpu for gpu, load in self.load.items() if load == 0]
        return processes == 1 or not self.load or len(idle) >= processes

    def _take(self, processes: int) -> tuple[str, ...]:
        self.running += 1
        if not self.load:
            return ()
        if processes == 1:
            chosen = [min(self.load, key=lambda gpu: self.load[gpu])]
        else:
            chosen = [gpu for gpu, load in self.load.items() if load == 0][:processes]
        for gpu in chosen:
            self.load[gpu] += 1
        return tuple(chosen)

    def _threads(self, processes: int) -> int:
        """CPU threads per process, so that parallel children do not fight over cores."""
        return max(1, self.cores // (min(self.slots, self.cores) * processes))


class Trainings:
    """The trained candidates of a run: trained at their turn in this process, or started
    together in child processes when the machine can train several at once."""

    def __init__(
        self,
        suite: LoadedSuite,
        train: Callable[[str, Placement | None, dict[str, Any]], Any],
        *,
        gpus: list[str] | None = None,
        on_queued: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.suite = suite
        # (candidate, placement or None for in-process, its dependencies' trained models)
        # -> TrainedModel
        self.train = train
        self.done: dict[str, Any] = {}  # trained in this process: a model, or its exception
        self.gpus = visible_gpus() if gpus is None else gpus
        self.slots = parallel_slots(suite.spec.training.parallel, len(self.gpus))
        self.pool = DevicePool(self.gpus, self.slots)
        self.on_queued = on_queued
        self.futures: dict[str, Future[Any]] = {}
        self.executor: ThreadPoolExecutor | None = None

    @property
    def in_parallel(self) -> bool:
        return self.slots > 1

    def start(self, names: list[str]) -> None:
        """Start every training now when they run in parallel; else nothing (they train at
        their turn)."""
        if not self.in_parallel or not names:
            return
        # deferred: ~15-25 ms of a fully cached rerun's start-up, needed only to train in parallel
        from concurrent.futures import ThreadPoolExecutor

        self.executor = ThreadPoolExecutor(self.slots, thread_name_prefix="harness-train")
        # Dependencies first: a thread waiting for one then never holds the worker it needs.
        for name in self.in_order(names):
            self.on_queued(name)
            self.futures[name] = self.executor.submit(self._in_child, name)

    def in_order(self, names: list[str]) -> list[str]:
        """`names` and what they depend on, each after its dependencies."""
        ordered: list[str] = []

        def visit(name: str) -> None:
            for dependency in self.suite.trainings[name].depends_on:
                visit(dependency)
            if name not in ordered:
                ordered.append(name)

        for name in names:
            visit(name)
        return ordered

    def result(self, name: str) -> Any:
        """The candidate's trained model (waiting for it); its training's error otherwise.
        Trained once per run: asked again (a merge of it, a candidate it rewards), the same."""
        if name in self.futures:
            return self.futures[name].result()
        if name not in self.done:
            try:
                dependencies = self._dependencies(name)
                if self._launch(name) is not None:
                    self.done[name] = self._in_child(name, dependencies)
                else:
                    self.done[name] = self.train(name, None, dependencies)
            except Exception as exc:  # kept, so that each candidate needing it says so
                self.done[name] = exc
        found = self.done[name]
        if isinstance(found, Exception):
            raise found
        return found

    def _dependencies(self, name: str) -> dict[str, Any]:
        """The trained models `name` needs, waiting for them; an error naming a failed one."""
        found = {}
        for dependency in self.suite.trainings[name].depends_on:
            try:
                found[dependency] = self.result(dependency)
            except Exception as exc:
                raise HarnessError(
                    f"it needs {dependency}, whose training failed: {type(exc).__name__}: {exc}"
                ) from exc
        return found

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)

    def _launch(self, name: str) -> Any:
        return self.suite.trainings[name].accelerate

    def _in_child(self, name: str, dependencies: dict[str, Any] | None = None) -> Any:
        if dependencies is None:  # waited for before a device is taken
            dependencies = self._dependencies(name)
        launch = self._launch(name)
        processes = launch.num_processes if launch is not None and self.gpus else 1
        with self.pool.placement(processes) as placement:
            return self.train(name, placement, dependencies)


__all__ = ["DevicePool", "Trainings", "parallel_slots", "visible_gpus"]
