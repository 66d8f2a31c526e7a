"""The Ray engine (`execution: {engine: ray}`): every model of the run on a Ray cluster at once.

Each model is a Ray actor (harness.run._worker) asking for what it needs (CPUs, GPUs, a launch's
GPUs of one node, memory from `harness plan` on a CPU cluster); Ray places them. A trained
candidate trains and is evaluated in the same actor, so its weights never travel to be evaluated;
its artifact comes back to this machine's $HARNESS_HOME (or stays at the shared `artifacts:`
location, full weights). This process alone writes the store: it serves the workers' reads and
writes and forwards their progress (the hub), and decides the gates as for a local run.

A worker that dies (killed, out of memory, its node lost) fails its own model only; Ray restarts it
`retries` times first.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError
from harness.core.home import harness_home
from harness.core.records import ModelRecord
from harness.evaluation import ModelResult
from harness.run._worker import (
    REPORTER_METHODS,
    STORE_READS,
    STORE_WRITES,
    ArtifactRef,
    Mailbox,
    ModelWorker,
    RemoteTraining,
    WorkerSetup,
)
from harness.suite import Execution, LoadedSuite
from harness.training import (
    SharedArtifacts,
    TrainedModel,
    cached_artifact,
    dependency_failed,
    in_dependency_order,
    pack_artifact,
    stored_artifact,
    unpack_artifact,
)

NAMESPACE = "harness"
EVENTS_AT_ONCE = 500  # collected from the mailbox in one call
MAX_MODELS = 256  # models in flight at once (threads are made only as models are submitted)
CONNECT_TIMEOUT_S = 10.0
LOG_HINT = "its output is in the Ray logs on its node (/tmp/ray/session_latest/logs)"


@dataclass(frozen=True)
class Cluster:
    """The Ray cluster this run joined (or started)."""

    description: str
    node: str | None  # this process's node; None under Ray Client (another machine)
    gpus: float  # GPUs in the whole cluster
    nodes: tuple[dict[str, float], ...]  # each alive node's resources, for placement checks


def connect(execution: Execution) -> Cluster:
    """Join the cluster `execution` names (or start one on this machine): HarnessError when it
    cannot, before anything is recorded."""
    import ray  # deferred: ray is an optional extra, imported only for engine: ray

    address = execution.address
    if address is not None and address != "auto":
        _reachable(address)
    try:
        ray.init(
            address=address or "local",  # "local": a new instance, never one RAY_ADDRESS names
            namespace=NAMESPACE,
            runtime_env=execution.runtime_env,
            include_dashboard=False if address is None else None,
            log_to_driver=False,  # trainer chatter stays in the workers' logs; errors come back
            logging_level=logging.ERROR,
            ignore_reinit_error=True,
        )
    except Exception as exc:  # ConnectionError, RuntimeError, ValueError: all say "cannot join"
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise HarnessError(f"execution: could not join {where}: {exc}") from exc
    node = None if _through_client() else str(ray.get_runtime_context().get_node_id())
    nodes = tuple(
        {k: float(v) for k, v in n["Resources"].items()} for n in ray.nodes() if n.get("Alive")
    )
    gpus = float(ray.cluster_resources().get("GPU", 0))
    cpus = sum(n.get("CPU", 0) for n in nodes)
    described = address or "a local Ray instance"
    return Cluster(
        f"{described}: {len(nodes)} node(s), {cpus:g} CPUs, {gpus:g} GPUs", node, gpus, nodes
    )


def _through_client() -> bool:
    """Whether this process reached the cluster through Ray Client (`ray://`, also when
    RAY_ADDRESS said so): then it shares no disk with any worker."""
    from ray.util.client import ray as client  # deferred: see connect

    return bool(client.is_connected())


def _reachable(address: str) -> None:
    """HarnessError unless the cluster's port answers: Ray itself retries an unreachable address
    for minutes, printing warnings, before it gives up."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except (OSError, ValueError) as exc:
        raise HarnessError(
            f"execution: could not join the Ray cluster at {address}: nothing answers there "
            f"({exc}); start one with `ray start --head`, or give its address as HOST:PORT or "
            "ray://HOST:10001"
        ) from exc


def disconnect() -> None:
    import ray  # deferred: see connect

    ray.shutdown()


class SerializedStore:
    """The store, one call at a time: the hub thread writes the workers' outputs while the run's
    thread records candidates."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self._lock = threading.RLock()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if not callable(attribute):
            return attribute

        def locked(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attribute(*args, **kwargs)

        return locked


class InOrder:
    """Each worker's posts in the order it numbered them (the async Mailbox may run them in
    another): a post is held until those before it on its line have come."""

    def __init__(self) -> None:
        self.expected: dict[str, int] = {}
        self.held: dict[str, dict[int, Any]] = {}

    def add(self, line: str, number: int, post: Any) -> list[Any]:
        """The posts now due on `line`, `post` among them when it is."""
        held = self.held.setdefault(line, {})
        held[number] = post
        due = []
        expected = self.expected.get(line, 1)
        while expected in held:
            due.append(held.pop(expected))
            expected += 1
        self.expected[line] = expected
        return due


class Hub:
    """Serves the workers through the run's `Mailbox`: their progress to the run's display,
    their writes to the store, their reads answered from it; each worker's posts in its order.
    A post it cannot handle does not stop it: the first such failure is raised by `drain`."""

    def __init__(self, store: Any, reporter: Any, mailbox: Any) -> None:
        import ray  # deferred: see connect

        self.ray = ray
        self.store = store
        self.reporter = reporter
        self.mailbox = mailbox
        self.order = InOrder()
        self.failures: list[str] = []
        self.consuming = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="harness-ray-hub", daemon=True)
        self.thread.start()

    def drain(self) -> None:
        """Handle every post so far (a worker flushes its posts before it returns); raise the
        first post that could not be handled (a store write lost is a run error, not a pass)."""
        while self._step(timeout=0):
            pass
        if self.failures:
            raise HarnessError(f"a worker's post could not be handled: {self.failures[0]}")

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                self._step(timeout=0.2)
            except Exception as exc:  # the mailbox gone (the run is ending), or Ray is
                if not self.stopped.is_set():
                    self.failures.append(f"the run's mailbox failed: {exc}")
                return

    def _step(self, *, timeout: float) -> bool:
        with self.consuming:
            posts = self.ray.get(self.mailbox.collect.remote(EVENTS_AT_ONCE, timeout))
            for worker, line, number, *body in posts:
                for due in self.order.add(line, number, (worker, line, number, *body)):
                    self._handle(due)
            return bool(posts)

    def _handle(self, post: tuple[Any, ...]) -> None:
        worker, line, number, kind, method, args, kwargs = post
        try:
            if kind == "report" and method in REPORTER_METHODS:
                getattr(self.reporter, method)(*args, **kwargs)
            elif kind == "write" and method in STORE_WRITES:
                getattr(self.store, method)(*args, **kwargs)
            elif kind == "read" and method in STORE_READS:
                self._answer(line, number, method, args)
        except Exception as exc:
            self.failures.append(f"{worker}: {kind} {method}: {type(exc).__name__}: {exc}")

    def _answer(self, line: str, number: int, method: str, args: Sequence[Any]) -> None:
        try:
            answer: Any = (number, self._read(method, args))
        except Exception as exc:  # said to the worker, which raises it there
            answer = HarnessError(f"the run could not read its store: {exc}")
        self.mailbox.answer.remote(line, answer)

    def _read(self, method: str, args: Sequence[Any]) -> Any:
        if method == "read_scopes":
            scopes = list(args[0])
            self.store.prefetch_scopes(scopes)
            return {scope: self.store.get_scope(scope) for scope in scopes}
        return getattr(self.store, method)(*args)


class RayEngine:
    """The run's models as Ray actors (see the module's docstring)."""

    def __init__(self, run: Any, cluster: Cluster) -> None:
        import ray  # deferred: see connect

        self.ray = ray
        self.run = run
        self.cluster = cluster
        execution = run.suite.spec.execution
        self.execution = execution
        self.gpus_each = (
            (1 if cluster.gpus > 0 else 0) if execution.gpus == "auto" else execution.gpus
        )
        self.shared = (
            SharedArtifacts(_location(execution.artifacts, run.suite))
            if (execution.artifacts)
            else None
        )
        self.mailbox = ray.remote(Mailbox).options(**_beside_the_run(cluster)).remote()
        self.hub = Hub(run.store, run.reporter, self.mailbox)
        self.setup = ray.put(
            WorkerSetup(
                run.suite,
                run.run_id,
                run.retrain,
                run.gating.fail_on,
                self.mailbox,
                cluster.node,
                str(harness_home()),
                self.shared.location if self.shared else None,
                execution.cpus,
            )
        )
        self.remote_worker = ray.remote(ModelWorker)
        # A thread per model, each only waiting on its actor: as many at once as the cluster runs
        self.threads = ThreadPoolExecutor(MAX_MODELS, thread_name_prefix="harness-ray")
        self.actors: dict[str, Any] = {}
        # `harness plan`'s estimates (reserved on a CPU cluster), made while the base evaluates
        self.memory = self.threads.submit(
            lambda: _planned_memory(run.suite) if self.gpus_each == 0 else {}
        )
        self.trainings: dict[str, Future[RemoteTraining]] = {}
        self.evaluations: dict[str, Future[list[ModelResult]]] = {}
        self.closing = False
        self.packs: dict[str, Any] = {}  # artifact name -> its packed bytes in the object store
        self.packing = threading.Lock()
        run.reporter.note("base", f"Ray: {cluster.description}")

    # --- the engine's interface (harness.run._runner.Engine) ---------------------------------

    def evaluate_base(self) -> ModelResult:
        reference = self.run.suite.models["base"]
        try:
            actor = self._actor("base", 1)
            result: ModelResult = self._get(actor.evaluate.remote("base", "base", reference, None))
        except Exception as exc:
            result = self._failed("base", "base", reference, exc)
        finally:
            self._release("base")
        self.hub.drain()  # its record and outputs are written before anything compares with it
        return result

    def start(self, base: ModelResult, candidates: Sequence[Any]) -> None:
        """Every candidate's actor at once (those it needs first): Ray places them."""
        selected = {c.name for c in candidates}
        names = [c.name for c in candidates if c.backend is not None]
        names += [s for c in candidates if c.merge_of is not None for s in c.merge_of.candidates]
        for name in in_dependency_order(self.run.suite, names):
            self.run.reporter.stage(name, "queued")
            self.trainings[name] = Future()
            self.evaluations[name] = Future()
            # one trained only for another (a reward model, a merge's source) is not evaluated
            self.threads.submit(self._trained_job, name, base, name in selected)
        for candidate in candidates:
            if candidate.model is not None:
                self.run.reporter.stage(candidate.name, "queued")
                self.evaluations[candidate.name] = self.threads.submit(
                    self._model_job, candidate.name, base
                )

    def trained(self, name: str, *, here: bool = False) -> TrainedModel:
        remote = self.trainings[name].result()
        target = harness_home() / "artifacts" / remote.artifact
        stored = stored_artifact(remote.artifact)
        shared = self.shared
        if stored is None and remote.shared_uri is not None and shared is not None and here:
            # full weights this process needs (a merge of them): copied from the location
            return cached_artifact(remote.artifact, _missing, shared=shared)
        if stored is None and remote.shared_uri is not None:
            return TrainedModel(  # full weights left at the shared location: not copied here
                target / "model",
                target / "merged" if remote.has_merged else None,
                remote.stats | {"shared_artifact": remote.shared_uri},
                remote.loss_curve,
                remote.reused,
            )
        if stored is None:
            raise HarnessError(f"the artifact {remote.artifact} did not reach this machine")
        return replace(stored, reused=remote.reused)

    def evaluated(self, name: str) -> ModelResult | None:
        base_name = name.removesuffix("+merged")
        if base_name not in self.evaluations:
            return None  # a merged candidate (`merge_of`): built and evaluated here
        try:
            results = self.evaluations[base_name].result()
        except Exception as exc:
            reference = self.run.suite.models.get(base_name) or f"backend:{base_name}"
            return self._failed(name, "candidate", reference, exc)
        self.hub.drain()
        return next((r for r in results if r.record.name == name), None)

    def close(self) -> None:
        self.closing = True  # no actor starts from now on
        for name in list(self.actors):
            self._release(name)
        self.threads.shutdown(wait=True, cancel_futures=True)
        self.hub.drain()
        self.hub.stop()
        self.ray.kill(self.mailbox)  # type: ignore[arg-type]
        disconnect()

    # --- jobs (each in a thread of its own, waiting on its actor) -----------------------------

    def _trained_job(self, name: str, base: ModelResult, evaluate: bool) -> None:
        trained, evaluated = self.trainings[name], self.evaluations[name]
        try:
            dependencies = {d: self._artifact(d) for d in self.run.suite.trainings[name].depends_on}
            launch = self.run.suite.trainings[name].accelerate
            actor = self._actor(name, launch.num_processes if launch else 1)
            remote: RemoteTraining = self._get(actor.train.remote(name, base, dependencies))
            target = harness_home() / "artifacts" / remote.artifact
            missing = not target.is_dir() or not remote.reused  # absent here, or older here
            if not remote.on_runs_disk and remote.shared_uri is None and missing:
                # built (or kept) on another node: its copy comes here, once
                packed = self._get(actor.packed.remote())
                unpack_artifact(packed, target, replace=not remote.reused)
            trained.set_result(remote)
        except BaseException as exc:
            trained.set_exception(_as_exception(exc))
            evaluated.set_result([])
            self._release(name)
            return
        if not evaluate:
            evaluated.set_result([])
            self._release(name)
            return
        try:
            evaluated.set_result(self._get(actor.evaluate_trained.remote(name, base, dependencies)))
        except BaseException as exc:
            evaluated.set_exception(_as_exception(exc))
        finally:
            self._release(name)

    def _model_job(self, name: str, base: ModelResult) -> list[ModelResult]:
        try:
            actor = self._actor(name, 1)
            reference = self.run.suite.models[name]
            return [self._get(actor.evaluate.remote(name, "candidate", reference, base))]
        finally:
            self._release(name)

    def _artifact(self, name: str) -> ArtifactRef:
        """A trained candidate another one needs, as its worker will find it."""
        try:
            remote = self.trainings[name].result()
        except Exception as exc:
            raise dependency_failed(name, exc) from exc
        stored = harness_home() / "artifacts" / remote.artifact
        if not stored.is_dir() or (self.cluster.node is not None and len(self.cluster.nodes) < 2):
            return ArtifactRef(remote.artifact)  # on every worker's disk, or at the location
        with self.packing:  # packed once into the object store, for every dependent
            if remote.artifact not in self.packs:
                self.packs[remote.artifact] = self.ray.put(pack_artifact(stored))
        return ArtifactRef(remote.artifact, self.packs[remote.artifact])

    # --- actors -------------------------------------------------------------------------------

    def _actor(self, name: str, processes: int) -> Any:
        """A new actor for model `name`, asking for what `processes` processes of it need."""
        if self.closing:
            raise HarnessError("the run is ending")
        cpus = self.execution.cpus * processes
        gpus = self.gpus_each * processes
        estimate = self.memory.result().get(name) if name != "base" else None
        memory = self._placeable(name, cpus, gpus, estimate * processes if estimate else None)
        options: dict[str, Any] = {
            "name": f"{self.run.run_id}:{name}",
            "namespace": NAMESPACE,
            "num_cpus": cpus,
            "num_gpus": gpus,
            "max_restarts": self.execution.retries,
            "max_task_retries": self.execution.retries,
        }
        if memory:
            options["memory"] = memory
        actor = self.remote_worker.options(**options).remote(self.setup, name)
        self.actors[name] = actor
        return actor

    def _placeable(self, name: str, cpus: float, gpus: float, memory: int | None) -> int | None:
        """The memory to reserve, once the request can be met. A memory estimate no node meets is
        dropped, with a note (an estimate is a reservation, not a requirement). CPUs or GPUs no
        node has: on the Ray instance this run started, which never grows, the model's error (it
        would wait forever); on a cluster, said and submitted (an autoscaler may add the node)."""
        wanted = {"CPU": cpus, "GPU": gpus, "memory": float(memory or 0)}
        if not self._meets(wanted) and memory and self._meets(wanted | {"memory": 0.0}):
            note = f"no node has the {_amount('memory', memory)} `harness plan` estimates for it"
            self.run.reporter.note(name, note + "; it runs without reserving memory")
            return None
        if self._meets(wanted):
            return memory
        asked = ", ".join(f"{k} {_amount(k, v)}" for k, v in wanted.items() if v)
        largest = "; ".join(
            ", ".join(f"{k} {_amount(k, n.get(k, 0))}" for k in wanted) for n in self.cluster.nodes
        )
        message = f"{name} asks Ray for {asked}, more than any node has ({largest or 'no node'})"
        if self.execution.address is None:
            raise HarnessError(message)
        self.run.reporter.note(name, message + "; waiting for the cluster to add one")
        return memory

    def _meets(self, wanted: dict[str, float]) -> bool:
        return any(
            all(node.get(k, 0) >= v for k, v in wanted.items() if v) for node in self.cluster.nodes
        )

    def _release(self, name: str) -> None:
        actor = self.actors.pop(name, None)
        if actor is not None:
            self.ray.kill(actor)

    def _get(self, ref: Any) -> Any:
        try:
            return self.ray.get(ref)
        except BaseException as exc:
            raise _fault(exc, self.execution.retries) from None

    def _failed(self, name: str, role: Any, reference: str, exc: BaseException) -> ModelResult:
        record = ModelRecord(name, role, reference, None, "error", f"{type(exc).__name__}: {exc}")
        self.hub.drain()
        self.run.store.record_model(self.run.run_id, record)
        self.run.reporter.done(name, "error")
        return ModelResult(record)


def _beside_the_run(cluster: Cluster) -> dict[str, Any]:
    """The Mailbox's options: no CPU, and on the run's own node when it has one (the run's posts
    live and die with the run)."""
    options: dict[str, Any] = {"num_cpus": 0, "namespace": NAMESPACE}
    if cluster.node is not None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # deferred

        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(cluster.node, soft=False)
    return options


def _fault(exc: BaseException, retries: int) -> BaseException:
    """What a Ray failure means for the model: the worker's own exception, or how it died."""
    import ray.exceptions as errors  # deferred: see connect

    if isinstance(exc, errors.RayTaskError):
        cause = exc.cause
        return cause if isinstance(cause, Exception) else HarnessError(str(exc).splitlines()[0])
    after = f" (after {retries} restart{'s' if retries != 1 else ''})" if retries else ""
    detail = " ".join(str(exc).split())[:600]
    if isinstance(exc, errors.OutOfMemoryError):
        return HarnessError(f"its Ray worker ran out of memory{after}: {detail}; {LOG_HINT}")
    if isinstance(exc, errors.RayActorError | errors.WorkerCrashedError | errors.NodeDiedError):
        return HarnessError(f"its Ray worker died{after}: {detail}; {LOG_HINT}")
    if isinstance(exc, errors.RayError):
        return HarnessError(f"Ray failed it: {type(exc).__name__}: {detail}")
    return exc


def _missing(_: Path) -> None:
    raise HarnessError("the artifact is neither here nor at the shared location")


def _as_exception(exc: BaseException) -> Exception:
    return exc if isinstance(exc, Exception) else HarnessError(f"{type(exc).__name__}: {exc}")


def _planned_memory(suite: LoadedSuite) -> dict[str, int]:
    """Each model's peak memory on the CPU as `harness plan` estimates it (what Ray reserves for
    it on a CPU cluster); nothing for a model it cannot estimate."""
    try:
        from harness.plan import plan_suite  # deferred: loads the base's config and tokenizer

        plan = plan_suite(suite, device="cpu")
    except Exception:  # an estimate is a reservation, not a requirement: without it, none
        return {}
    return {row.name: int(row.peak.total) for row in plan.rows}


def _amount(kind: str, value: float) -> str:
    if kind == "memory":
        from harness.plan import human_bytes  # deferred: see _planned_memory

        return human_bytes(value)
    return f"{value:g}"


def _location(location: str | None, suite: LoadedSuite) -> str:
    """A shared location as fsspec reads it: a relative path is relative to the suite file."""
    from fsspec.core import split_protocol  # deferred: only runs with `artifacts:` need it

    assert location is not None
    protocol, _ = split_protocol(location)
    if protocol is None and not Path(location).is_absolute():
        return str((suite.path.parent / location).resolve())
    return location


__all__ = ["Cluster", "Hub", "InOrder", "RayEngine", "SerializedStore", "connect", "disconnect"]
