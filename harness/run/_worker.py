"""A model's Ray worker (`execution: {engine: ray}`): it trains a candidate where Ray placed it
and evaluates it there, with the weights already in place, by the same code as a local run.

The worker never opens the DuckDB store: the run's process is its only writer. The worker's
store is a proxy that asks the run for what it reads (a model's cached outputs) and sends it what
it writes (outputs as each batch finishes, a base's record), and its reporter sends progress the
same way, all through the run's one `Mailbox` actor, numbered so the run handles them in order
(harness.run._ray's Hub serves it). Gates are decided by the run.

This module imports Ray only inside functions: harness.run._ray makes Ray actors of `ModelWorker`
and `Mailbox`.
"""

from __future__ import annotations

import os
import threading
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError
from harness.core.noise import quiet_harmless_messages
from harness.core.progress import Reporter
from harness.evaluation import ModelResult
from harness.run._runner import Gating, _evaluate_now, _judge, _Run
from harness.suite import LoadedSuite
from harness.training import (
    Placement,
    SharedArtifacts,
    TrainedModel,
    cached_artifact,
    extract_artifact,
    launch_placement,
    pack_artifact,
    train_candidate,
)

PENDING_KEPT = 512  # posts not yet known to be in the box, before the done ones are dropped
ANSWER_TIMEOUT_S = 600.0  # the run answers reads at once; this long silent means it is gone
REPORTER_METHODS = frozenset({"stage", "advance", "training", "note", "done"})
STORE_WRITES = frozenset({"put_many", "record_model", "record_model_result"})
STORE_READS = frozenset({"get_many", "get_scope", "read_scopes"})


@dataclass(frozen=True)
class WorkerSetup:
    """What every worker of a run is given."""

    suite: LoadedSuite
    run_id: str
    retrain: bool
    fail_on: frozenset[str]
    mailbox: Any  # the run's Mailbox actor
    driver_node: str | None  # the run's Ray node (None under Ray Client: never the same disk)
    driver_home: str  # the run's $HARNESS_HOME, used as is by a worker on the run's node
    shared: str | None = None  # execution.artifacts
    cpus: float = 1.0  # per process, for a launch on the CPU


@dataclass(frozen=True)
class ArtifactRef:
    """A trained artifact as workers hand it on: its name under $HARNESS_HOME/artifacts, and its
    bytes when it was built on another node than the one that needs it."""

    name: str
    packed: Any = None  # a Ray object reference to pack_artifact's bytes, or None


@dataclass(frozen=True)
class RemoteTraining:
    """What `ModelWorker.train` returns: the trained model as the run records it, and how its
    artifact reaches the run's $HARNESS_HOME."""

    artifact: str
    stats: dict[str, Any]
    loss_curve: list[tuple[int, float]]
    reused: bool
    has_merged: bool
    on_runs_disk: bool  # in the run's $HARNESS_HOME already (a worker on the run's node)
    shared_uri: str | None = None  # where it lies when it was left at the shared location


class Mailbox:
    """The run's post box on the cluster, one Ray actor for the whole run: workers post events
    (progress, store writes, questions) that the run collects in order, and the run posts each
    worker's answers. Async, so a worker awaiting its answer never holds up the others."""

    def __init__(self) -> None:
        import asyncio  # (the actor's own event loop runs these methods)

        self.events: asyncio.Queue[Any] = asyncio.Queue()
        self.answers: dict[str, asyncio.Queue[Any]] = {}

    async def post(self, event: Any) -> None:
        self.events.put_nowait(event)  # numbered by its sender: the run restores the order

    async def collect(self, most: int, timeout: float) -> list[Any]:
        """Up to `most` events, waiting up to `timeout` seconds for the first."""
        import asyncio

        found = []
        if self.events.empty() and timeout > 0:
            try:
                found.append(await asyncio.wait_for(self.events.get(), timeout))
            except TimeoutError:
                return []
        while len(found) < most and not self.events.empty():
            found.append(self.events.get_nowait())
        return found

    async def answer(self, line: str, answer: Any) -> None:
        self._answers(line).put_nowait(answer)

    async def await_answer(self, line: str, timeout: float) -> Any:
        import asyncio

        try:
            return await asyncio.wait_for(self._answers(line).get(), timeout)
        except TimeoutError:
            return TimeoutError(f"the run did not answer within {timeout:g} s")

    def _answers(self, line: str) -> Any:
        import asyncio

        return self.answers.setdefault(line, asyncio.Queue())


@dataclass
class Post:
    """A worker's line to the run, through the `Mailbox`. Posts are sent without waiting and
    numbered: the async Mailbox may run them out of order, and the run puts them back in order.
    `flush` waits for every post so far, so a worker's posts are all in the box before it returns.
    Each `Post` is its own line (`line`), so a worker Ray restarts starts a new one."""

    mailbox: Any  # the Mailbox actor's handle
    worker: str
    line: str = field(default_factory=lambda: f"{uuid.uuid4().hex[:12]}")
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _sent: int = 0
    _pending: list[Any] = field(default_factory=list)

    def tell(self, kind: str, method: str, *args: Any, **kwargs: Any) -> None:
        with self._lock:
            self._send((kind, method, args, kwargs))

    def ask(self, method: str, *args: Any) -> Any:
        import ray  # deferred: this module imports nothing of Ray at its top

        with self._lock:  # one question at a time: the answers come back in order
            asked = self._send(("read", method, args, {}))
            reply = ray.get(self.mailbox.await_answer.remote(self.line, ANSWER_TIMEOUT_S))
        if isinstance(reply, Exception):  # the run could not read its store, or is gone
            raise HarnessError(f"the run did not answer its Ray worker: {reply}")
        answered, answer = reply
        if answered != asked:
            raise HarnessError(f"the run answered post {answered}, not {asked}")
        return answer

    def flush(self) -> None:
        """Wait until every post so far is in the box."""
        import ray  # deferred: see ask

        with self._lock:
            pending, self._pending = self._pending, []
        ray.get(pending)

    def _send(self, body: tuple[Any, ...]) -> int:
        self._sent += 1
        event = (self.worker, self.line, self._sent, *body)
        self._pending.append(self.mailbox.post.remote(event))
        if len(self._pending) >= PENDING_KEPT:  # a long training posts for hours: drop the done
            import ray  # deferred: see ask

            _, self._pending = ray.wait(self._pending, num_returns=len(self._pending), timeout=0)
        return self._sent


@dataclass
class RemoteStore:
    """The store as a worker sees it: reads asked of the run, writes sent to it."""

    post: Post
    _prefetched: dict[str, dict[tuple[str, str], str]] = field(default_factory=dict)

    def get_many(self, kind: str, keys: list[str]) -> dict[str, Any]:
        return self.post.ask("get_many", kind, list(keys))  # type: ignore[no-any-return]

    def get_scope(self, scope: str) -> dict[tuple[str, str], str]:
        if (found := self._prefetched.pop(scope, None)) is not None:
            return found
        return self.post.ask("get_scope", scope)  # type: ignore[no-any-return]

    def prefetch_scopes(self, scopes: list[str]) -> None:
        self._prefetched.update(self.post.ask("read_scopes", list(scopes)))

    def put_many(self, kind: str, items: dict[str, Any], *, scope: str | None = None) -> None:
        self.post.tell("write", "put_many", kind, items, scope=scope)

    def record_model(self, *args: Any) -> None:
        self.post.tell("write", "record_model", *args)

    def record_model_result(self, *args: Any) -> None:
        self.post.tell("write", "record_model_result", *args)


class RemoteReporter(Reporter):
    """Progress sent to the run's display."""

    def __init__(self, post: Post) -> None:
        self.post = post

    def _send(self, method: str, *args: Any, **kwargs: Any) -> None:
        self.post.tell("report", method, *args, **kwargs)

    def stage(self, model: str, stage: str, total: int | None = None) -> None:
        self._send("stage", model, stage, total)

    def advance(self, model: str, completed: float, *, batches: int = 0, tokens: int = 0) -> None:
        self._send("advance", model, completed, batches=batches, tokens=tokens)

    def training(
        self, model: str, step: int, total: int, loss: float | None, phase: str = "training"
    ) -> None:
        self._send("training", model, step, total, loss, phase)

    def note(self, model: str, text: str) -> None:
        self._send("note", model, text)

    def done(self, model: str, verdict: str) -> None:
        self._send("done", model, verdict)


class ModelWorker:
    """One model of the run on a Ray worker: the base, a `model:` candidate, or a trained
    candidate (trained, then evaluated with its merged model when it has one)."""

    def __init__(self, setup: WorkerSetup, worker: str) -> None:
        self.node = _node_id()
        self.local = setup.driver_node is not None and self.node == setup.driver_node
        if self.local:  # the run's own disk: its artifacts and builds, no copies
            os.environ["HARNESS_HOME"] = setup.driver_home
        if not _gpus_given():  # Ray leaves the node's GPUs visible to a worker given none
            os.environ["CUDA_VISIBLE_DEVICES"] = ""
        quiet_harmless_messages()
        self.setup = setup
        self.post = Post(setup.mailbox, worker)
        self.run = _Run(
            setup.suite,
            RemoteStore(self.post),  # type: ignore[arg-type]
            setup.run_id,
            RemoteReporter(self.post),
            Gating(fail_on=setup.fail_on),
            retrain=setup.retrain,
        )
        self.shared = SharedArtifacts(setup.shared) if setup.shared else None
        self.trained: TrainedModel | None = None

    def evaluate(
        self, name: str, role: str, reference: str, base: ModelResult | None
    ) -> ModelResult:
        """A model's evaluation (a base's is recorded by the run as it arrives)."""
        try:
            return _evaluate_now(self._for(name), name, role, reference, base)
        finally:
            self.post.flush()

    def train(
        self, name: str, base: ModelResult, dependencies: dict[str, ArtifactRef]
    ) -> RemoteTraining:
        """Train candidate `name` (or reuse its artifact), on the devices Ray gave this worker."""
        try:
            return self._handed_back(self._train(name, base, dependencies))
        finally:
            self.post.flush()

    def evaluate_trained(
        self, name: str, base: ModelResult, dependencies: dict[str, ArtifactRef]
    ) -> list[ModelResult]:
        """The trained candidate's evaluation, and its merged model's when it has one (in a
        worker Ray restarted, after finding its artifact again)."""
        try:
            trained = self.trained or self._train(name, base, dependencies)
            run = self._for(name)
            found = [_evaluate_now(run, name, "candidate", str(trained.model_dir), base)]
            if trained.merged_dir is not None:
                merged = f"{name}+merged"
                found.append(_evaluate_now(run, merged, "candidate", str(trained.merged_dir), base))
            return found
        finally:
            self.post.flush()

    def _train(
        self, name: str, base: ModelResult, dependencies: dict[str, ArtifactRef]
    ) -> TrainedModel:
        run = self._for(name)
        where = f"Ray node {self.node[:8]}" + (f", GPU {','.join(_gpus())}" if _gpus() else "")
        run.reporter.stage(name, f"training ({where})")

        def progress(update: Any) -> None:
            run.reporter.training(name, update.step, update.total_steps, update.loss, update.phase)

        self.trained = train_candidate(
            run.suite,
            name,
            run.base_dir(),
            base.record.fingerprint or "",
            retrain=run.retrain,
            progress=progress,
            placement=self._placement(name),
            judge=_judge(run, name, base),
            dependencies={d: self._dependency(ref) for d, ref in dependencies.items()},
            shared=self.shared,
        )
        return self.trained

    def _for(self, name: str) -> _Run:
        """The run as candidate `name` sees it: the capabilities it names (`capabilities:`)."""
        candidate = next((c for c in self.setup.suite.spec.candidates if c.name == name), None)
        if candidate is None:
            return self.run
        return replace(self.run, suite=self.run.suite.only(candidate.capabilities))

    def _placement(self, name: str) -> Placement | None:
        launch = self.setup.suite.trainings[name].accelerate
        if launch is None:
            return None
        cores = max(1, int(self.setup.cpus * launch.num_processes))
        return launch_placement(launch.num_processes, _gpus(), cores)

    def _dependency(self, ref: ArtifactRef) -> TrainedModel:
        """A trained candidate this one needs (a reward model), in this node's $HARNESS_HOME:
        there already, or put there whole from the shared location or the bytes handed on."""

        def unpacked(scratch: Path) -> None:
            if ref.packed is None:
                raise HarnessError(f"artifact {ref.name} is not on this node")
            import ray  # deferred: this module imports nothing of Ray at its top

            extract_artifact(ray.get(ref.packed), scratch)

        return cached_artifact(ref.name, unpacked, shared=self.shared)

    def packed(self) -> bytes:
        """The trained artifact packed for the trip to the run (which asks only when its
        $HARNESS_HOME lacks it, or holds an older copy)."""
        if self.trained is None:
            raise HarnessError("nothing was trained by this worker")
        return pack_artifact(self.trained.model_dir.parent)

    def _handed_back(self, trained: TrainedModel) -> RemoteTraining:
        """The artifact as the run gets it: on its own disk already, at the shared location
        (full weights), or to be packed for the trip (`packed`)."""
        artifact = trained.model_dir.parent
        shared_uri = None
        adapter = (trained.model_dir / "adapter_config.json").is_file()
        if not self.local and self.shared is not None and not adapter:
            shared_uri = self.shared.uri(artifact.name) if self.shared.has(artifact.name) else None
        return RemoteTraining(
            artifact.name,
            trained.stats,
            trained.loss_curve,
            trained.reused,
            trained.merged_dir is not None,
            self.local,
            shared_uri,
        )


def _node_id() -> str:
    import ray  # deferred: this module imports nothing of Ray

    return str(ray.get_runtime_context().get_node_id())


def _gpus_given() -> bool:
    import ray  # deferred: see _node_id

    return bool(ray.get_gpu_ids())


def _gpus() -> list[str]:
    """The GPUs Ray gave this worker (its CUDA_VISIBLE_DEVICES), as a child's ids."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return [part for part in listed.split(",") if part.strip()]


__all__ = [
    "REPORTER_METHODS",
    "STORE_READS",
    "STORE_WRITES",
    "ArtifactRef",
    "Mailbox",
    "ModelWorker",
    "RemoteTraining",
    "WorkerSetup",
]
