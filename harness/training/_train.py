"""Training a candidate through its backend: cached artifacts, and what the training cost.

Artifacts live under $HARNESS_HOME/artifacts/, keyed by everything that decides the weights
(base fingerprint, backend, args, training data, seed, library versions), so a rerun reuses
them and `--retrain` forces a new one. The cost (wall time, peak memory, tokens/s, size on disk)
is measured here, the same way for every backend.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.backends import TrainRequest
from harness.backends.common import merge_adapter
from harness.checks import Case
from harness.core.device import pick_device
from harness.core.errors import HarnessError
from harness.core.home import harness_home
from harness.core.versions import installed_versions
from harness.models.builtin import build_lock, remove_stale_builds
from harness.suite import LoadedSuite, PlannedTraining, reward_checks
from harness.training._checkpoints import (
    CheckpointTracker,
    Judge,
    answer_checkpoint,
    parent_hook,
    timed_hook,
)
from harness.training._launch import TrainingJob, is_main_process, train_in_child
from harness.training._shared import SharedArtifacts

if TYPE_CHECKING:
    from harness.training._launch import Placement

TRAINING_RECORD = "training.json"
VERSIONED_LIBRARIES = (
    "harness",
    "torch",
    "transformers",
    "trl",
    "peft",
    "bitsandbytes",
    "accelerate",
)


@dataclass(frozen=True)
class TrainedModel:
    model_dir: Path  # a full model or an adapter, loadable by load_model
    merged_dir: Path | None  # the adapter merged into its base, when the suite asks
    stats: dict[str, Any]  # recorded as the candidate's info["training"]
    loss_curve: list[tuple[int, float]]
    reused: bool  # served from the artifact cache


def library_versions() -> dict[str, str]:
    """What a trained artifact's key and record name (an absent library as "absent")."""
    return {k: v or "absent" for k, v in installed_versions(VERSIONED_LIBRARIES).items()}


@functools.cache
def training_device() -> str:
    """The kind of device a candidate trains on here (the backends' own pick): cpu, cuda, or
    cuda-bf16."""
    device = pick_device()
    return f"{device.name}-bf16" if device.bf16 else device.name


def artifact_key(
    plan: PlannedTraining,
    base_fingerprint: str,
    seed: int,
    chat_template: bool,
    system_prompt: str | None = None,
    dependencies: Mapping[str, Path] | None = None,
) -> str:
    """A hash of everything that decides the trained weights (`dependencies`: the model
    directories of the candidates it needs first, by name)."""
    parts = {
        "base": base_fingerprint,
        "backend": plan.backend.name,
        "args": plan.config.model_dump(mode="json"),
        "data": plan.data_hash,
        "seed": seed,
        "chat_template": chat_template,
        "merge": plan.merge,
        "reward": plan.reward.model_dump(mode="json") if plan.reward else None,
        "libraries": library_versions(),
        # bf16 autocast on a GPU and float32 on the CPU train other weights from the same args
        "device": training_device(),
    }
    if chat_template and system_prompt is not None:  # only then is it in the training rows
        parts["system_prompt"] = system_prompt
    if plan.accelerate is not None:  # data parallel changes the global batch, FSDP the maths
        parts["accelerate"] = plan.accelerate.key()
    if plan.checkpoint_hash is not None:  # `select` and `stop_on` decide the weights kept
        parts["checkpoints"] = plan.checkpoint_hash
    if dependencies:  # a reward model's own artifact (its directory is named by its key)
        parts["depends_on"] = {name: dependencies[name].parent.name for name in plan.depends_on}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def train_candidate(
    suite: LoadedSuite,
    name: str,
    base_dir: Path,
    base_fingerprint: str,
    *,
    retrain: bool = False,
    progress: Callable[[Any], None] = lambda _: None,
    placement: Placement | None = None,
    judge: Judge | None = None,
    dependencies: Mapping[str, TrainedModel] | None = None,
    shared: SharedArtifacts | None = None,
) -> TrainedModel:
    """The trained artifact of candidate `name`: from the cache (or the `shared` location), or
    trained now, in this process or (with a `placement`) in a child process on the devices it
    names.

    `judge` evaluates the candidate's checkpoints (`checkpoints:`) in this process, also for
    a child, which hands each checkpoint over through its scratch directory. `dependencies`
    are the trained candidates it needs (`plan.depends_on`: a reward model), trained first.
    """
    plan = suite.trainings[name]
    if plan.checkpoints is not None and judge is None:
        raise HarnessError(f"{name}: its checkpoints need a judge to evaluate them")
    needed = {d: (dependencies or {})[d].model_dir for d in plan.depends_on}
    chat = bool(suite.spec.generation.chat_template)
    key = artifact_key(
        plan, base_fingerprint, suite.spec.seed, chat, suite.spec.generation.system_prompt, needed
    )

    def build(scratch: Path) -> None:
        tracker = None
        if plan.checkpoints is not None and judge is not None:
            tracker = CheckpointTracker(plan.checkpoints, judge, scratch)
        if placement is None:
            train_into(scratch, suite, name, base_dir, progress, tracker, needed)
        else:
            _train_in_child(scratch, suite, name, base_dir, placement, progress, tracker, needed)
        if tracker is not None:
            _keep_selected(scratch, plan, tracker)

    artifact = f"{plan.backend.name}-{key}"
    return cached_artifact(artifact, build, retrain=retrain, shared=shared)


def cached_artifact(
    name: str,
    build: Callable[[Path], None],
    *,
    retrain: bool = False,
    shared: SharedArtifacts | None = None,
) -> TrainedModel:
    """$HARNESS_HOME/artifacts/NAME (NAME holds its key): reused, copied from the `shared`
    location, or built by `build` into a scratch directory that replaces it only once complete
    (`retrain`: built again). A built artifact is also written to the `shared` location."""
    target = harness_home() / "artifacts" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    with build_lock(target):  # two runs building the same artifact: the second waits, reuses
        if target.is_dir() and not retrain:
            if shared is not None and not shared.has(name):  # built here before, or cut short
                shared.upload(target, name)
            return _reuse(target)
        remove_stale_builds(target)
        fetched = not retrain and shared is not None and shared.has(name)
        scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            if fetched and shared is not None:
                shared.download(name, scratch)
            else:
                build(scratch)
            if target.is_dir():
                shutil.rmtree(target)  # --retrain replaces the old artifact
            os.rename(scratch, target)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        if shared is not None and not fetched:
            shared.upload(target, name, replace=retrain)
    return _reuse(target, reused=fetched)


def stored_artifact(name: str) -> TrainedModel | None:
    """Artifact `name` as $HARNESS_HOME holds it, or None."""
    target = harness_home() / "artifacts" / name
    return _reuse(target) if (target / TRAINING_RECORD).is_file() else None


def _reuse(target: Path, *, reused: bool = True) -> TrainedModel:
    record = json.loads((target / TRAINING_RECORD).read_text(encoding="utf-8"))
    merged = target / "merged"
    curve = [(int(step), float(loss)) for step, loss in record.pop("loss_curve")]
    return TrainedModel(
        target / "model", merged if merged.is_dir() else None, record, curve, reused
    )


def _train_in_child(
    scratch: Path,
    suite: LoadedSuite,
    name: str,
    base_dir: Path,
    placement: Placement,
    progress: Callable[[Any], None],
    tracker: CheckpointTracker | None = None,
    dependencies: Mapping[str, Path] | None = None,
) -> None:

    job = TrainingJob(
        suite_path=str(suite.path),
        suite_hash=suite.hash,
        base_reference=suite.models["base"],
        candidate=name,
        base_dir=str(base_dir),
        scratch=str(scratch),
        dependencies={k: str(v) for k, v in (dependencies or {}).items()},
    )
    answer = partial(answer_checkpoint, tracker) if tracker is not None else None
    train_in_child(job, suite.trainings[name].accelerate, placement, progress, answer)


def _keep_selected(scratch: Path, plan: PlannedTraining, tracker: CheckpointTracker) -> None:
    """The selected checkpoint's weights become the artifact's model (and its merged model);
    the training record gets every checkpoint's evaluation."""
    model_dir = scratch / "model"
    checkpoints = tracker.finish(model_dir)
    record_path = scratch / TRAINING_RECORD
    stats = json.loads(record_path.read_text(encoding="utf-8"))
    if tracker.swapped and (scratch / "merged").is_dir():
        shutil.rmtree(scratch / "merged")  # merged from the last weights, not the kept ones
        merge_adapter(model_dir, scratch / "merged")
    stats["artifact_bytes"] = directory_bytes(model_dir)
    stats["checkpoints"] = checkpoints
    record_path.write_text(json.dumps(stats, indent=2), encoding="utf-8")


def train_into(
    scratch: Path,
    suite: LoadedSuite,
    name: str,
    base_dir: Path,
    progress: Callable[[Any], None],
    tracker: CheckpointTracker | None = None,
    dependencies: Mapping[str, Path] | None = None,
) -> None:
    """Train candidate `name` into `scratch`: the model (or adapter), the merged model when
    asked, and the training record. Under `accelerate launch` every process trains and the
    main one alone writes what follows the training. `dependencies`: the model directories of
    the candidates it needs (a reward model), by name.

    Checkpoints (`checkpoints:`) go to `tracker` in the run's process; in a child (no tracker)
    they are handed to the parent, which evaluates them and says whether to stop.
    """

    plan = suite.trainings[name]
    hook = None
    if plan.checkpoints is not None:
        hook = tracker.hook() if tracker is not None else parent_hook(plan.checkpoints, scratch)
    hook, spent = timed_hook(hook)
    request = TrainRequest(
        base_dir=base_dir,
        rows=plan.rows,
        config=plan.config,
        seed=suite.spec.seed,
        output_dir=scratch / "model",
        progress=progress,
        reward=build_reward(suite, plan, dependencies),
        chat_template=bool(suite.spec.generation.chat_template),
        system_prompt=suite.spec.generation.system_prompt,
        checkpoints=hook,
    )
    request.output_dir.mkdir(exist_ok=True)  # every process of a launch makes it
    with PeakMemory() as memory:
        started = time.perf_counter()
        result = plan.backend.train(request)
        wall = time.perf_counter() - started
    if not is_main_process():
        return
    if plan.merge and result.is_adapter:
        merge_adapter(result.model_dir, scratch / "merged")
    # Time spent on checkpoints is not training time: methods compare on the latter.
    args = plan.config.model_dump(mode="json")
    stats = cost_record(plan.backend.name, args, result, wall - spent(), memory, suite.spec.seed)
    stats |= {"data_hash": plan.data_hash, "data_rows": len(plan.rows)}
    if plan.checkpoints is not None:
        stats["checkpoint_seconds"] = round(spent(), 3)
    if plan.replay is not None and plan.replay_rows:
        stats["replay"] = plan.replay.model_dump(mode="json") | {"rows": plan.replay_rows}
    # Where it trained: the process count of a launch, and the GPUs a child was given.
    stats["processes"] = int(os.environ.get("WORLD_SIZE", "1"))
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        stats["visible_devices"] = os.environ["CUDA_VISIBLE_DEVICES"]
    (scratch / TRAINING_RECORD).write_text(json.dumps(stats, indent=2), encoding="utf-8")
    if result.model_dir.resolve() != request.output_dir.resolve():
        raise HarnessError(
            f"backend {plan.backend.name} saved to {result.model_dir}, not {request.output_dir}"
        )


def cost_record(
    backend: str, args: dict[str, Any], result: Any, wall: float, memory: PeakMemory, seed: int
) -> dict[str, Any]:
    """What building an artifact cost and gave, as recorded in training.json (training
    statistics: the methods table reads these; a merge records them too)."""
    tokens = result.train_tokens
    return {
        "backend": backend,
        "args": args,
        "wall_seconds": round(wall, 3),
        "train_tokens": tokens,
        # None when no token was counted (a merge trains none): a rate of 0 would be a measurement
        "tokens_per_second": round(tokens / wall, 1) if wall > 0 and tokens else None,
        "peak_memory_bytes": memory.peak_bytes,
        "peak_memory_kind": memory.kind,
        "trainable_parameters": result.trainable_parameters,
        "total_parameters": result.total_parameters,
        "artifact_bytes": directory_bytes(result.model_dir),
        "final_loss": result.final_loss,
        "loss_curve": [list(point) for point in result.loss_curve],
        "seed": seed,
        "device": result.device,
        "acceleration": getattr(result, "acceleration", {}),  # precision, attention, batches, ...
        "method": getattr(result, "details", {}),  # what only this method records
        "libraries": library_versions(),
    }


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


class PeakMemory:
    """Peak memory while training: CUDA max allocated on a GPU, else the process's peak RSS.

    On the CPU the RSS is sampled every 20 ms by a thread: the kernel's own maximum (ru_maxrss)
    covers the whole process lifetime, so it could not tell one candidate from the one before.
    """

    def __init__(self) -> None:
        self.peak_bytes = 0
        self.kind = "process_peak_rss"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        import torch

        if torch.cuda.is_available():
            self.kind = "cuda_max_allocated"
            torch.cuda.reset_peak_memory_stats()
        else:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        import psutil

        process = psutil.Process()
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, process.memory_info().rss)
            self._stop.wait(0.02)

    def __exit__(self, *_exc: object) -> None:
        import torch

        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        else:
            self.peak_bytes = int(torch.cuda.max_memory_allocated())


# --- GRPO rewards ----------------------------------------------------------------------------

Reward = Callable[[list[str], list[dict[str, Any]]], list[float]]


def build_reward(
    suite: LoadedSuite, plan: PlannedTraining, dependencies: Mapping[str, Path] | None = None
) -> Reward | None:
    """The suite's reward as a function of (completions, rows); a reward model is read from
    its trained directory in `dependencies`."""
    if plan.reward is None:
        return None
    if plan.reward.python is not None:
        module, _, function = plan.reward.python.partition(":")
        return getattr(importlib.import_module(module), function)  # type: ignore[no-any-return]
    if plan.reward.model is not None:
        return _model_reward(suite, plan.reward.model, dependencies or {})
    reward = plan.reward
    checks = reward_checks(reward.check or "", suite.checks)
    return lambda completions, rows: [
        _score(c, row, checks, reward.metric) for c, row in zip(completions, rows, strict=True)
    ]


def _model_reward(suite: LoadedSuite, name: str, dependencies: Mapping[str, Path]) -> Reward:
    """Reward model `name`'s score of each (row's prompt, completion)."""
    scorer_for = getattr(suite.trainings[name].backend, "reward_scorer", None)
    if scorer_for is None or name not in dependencies:
        raise HarnessError(f"the reward model {name} is not trained, or scores nothing")
    scorer = scorer_for(dependencies[name])
    return lambda completions, rows: scorer([str(r.get("prompt", "")) for r in rows], completions)


def _score(
    completion: str, row: dict[str, Any], checks: Sequence[Any], metric: str | None
) -> float:
    """The mean, over the rewarding checks, of one metric of this completion."""
    case = Case(str(row.get("id", "")), str(row.get("prompt", "")), row, "training row")
    scores = []
    for planned in checks:
        outcome = planned.check.score(completion, case, planned.spec)
        scores.append(outcome.scores[metric or planned.check.metrics[0]])
    return sum(scores) / len(scores)


def training_info(trained: TrainedModel) -> dict[str, Any]:
    """What a trained candidate records about its training (info["training"])."""
    # full weights left at a cluster's shared location (harness.run._ray) are found there
    where = trained.stats.get("shared_artifact") or str(trained.model_dir.parent)
    return trained.stats | {"reused_artifact": trained.reused, "artifact": where}


__all__ = [
    "TrainedModel",
    "artifact_key",
    "build_reward",
    "cached_artifact",
    "stored_artifact",
    "train_candidate",
    "training_info",
]
