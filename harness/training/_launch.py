"""Training a candidate in a child process: on the GPUs it was given, or on several through
`accelerate launch` (DDP; FSDP or DeepSpeed from the user's accelerate config file).

The parent keeps the artifact cache and its lock (harness.training._train) and decides the placement
(harness.training._schedule); the child (`python -m harness.training.worker JOB`) reloads the suite, trains
into the scratch directory it is given and speaks back in JSON lines on stdout: progress from the
main process, an error from whichever process failed. Everything else the child prints goes to a
log file whose tail ends up in the error when the child dies without saying why.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.backends import TrainProgress
from harness.suite import AccelerateConfig

PROGRESS_PREFIX = "harness-progress "
ERROR_PREFIX = "harness-error "
CHECKPOINT_PREFIX = "harness-checkpoint "  # a checkpoint saved for the parent to evaluate
LOG_TAIL_CHARS = 2000


class WorkerFailed(RuntimeError):
    """The training child failed: its own error (type and message), or how it died."""


@dataclass(frozen=True)
class Placement:
    """Where a child trains: physical GPU ids (its CUDA_VISIBLE_DEVICES); none means the CPU,
    with `threads` torch threads per process so parallel children do not oversubscribe cores."""

    gpus: tuple[str, ...] = ()
    threads: int | None = None

    def describe(self) -> str:
        return f"GPU {','.join(self.gpus)}" if self.gpus else "CPU"


@dataclass(frozen=True)
class TrainingJob:
    """What the child needs to train a candidate exactly as the parent would have."""

    suite_path: str
    suite_hash: str  # the child refuses a suite or data that changed since the run began
    base_reference: str  # the resolved base (after --base), so the child plans the same run
    candidate: str
    base_dir: str
    scratch: str
    dependencies: dict[str, str] = field(default_factory=dict)  # name -> trained model dir

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)), encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> TrainingJob:
        return cls(**json.loads(path.read_text(encoding="utf-8")))


def worker_command(
    job_file: Path, accelerate: AccelerateConfig | None, placement: Placement, port: int
) -> list[str]:
    """The child's command line: the worker module, under `accelerate launch` when asked."""
    worker = ["-m", "harness.training.worker", str(job_file)]
    if accelerate is None:
        return [sys.executable, *worker]
    command = [sys.executable, "-m", "accelerate.commands.launch"]
    if accelerate.config_file is not None:
        command += ["--config_file", str(accelerate.config_file)]
    else:
        # No config: plain data parallel over the processes (torchrun; gloo on the CPU).
        command += ["--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no"]
    command += ["--num_processes", str(accelerate.num_processes), "--num_machines", "1"]
    # Our CUDA_VISIBLE_DEVICES decides the GPUs; a config's gpu_ids would override it.
    command += ["--gpu_ids", "all", "--main_process_port", str(port)]
    if placement.threads is not None:
        command += ["--num_cpu_threads_per_process", str(placement.threads)]
    return [*command, *accelerate.args, *worker]


def worker_environment(placement: Placement) -> dict[str, str]:
    env = dict(os.environ)
    env["CUDA_VISIBLE_DEVICES"] = ",".join(placement.gpus)  # "" hides every GPU
    if placement.threads is not None:
        env["OMP_NUM_THREADS"] = str(placement.threads)
    env["PYTHONUNBUFFERED"] = "1"  # progress lines arrive as they are printed
    return env


def free_port() -> int:
    """A free TCP port for torchrun's rendezvous: two launches at once must not share 29500."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def train_in_child(
    job: TrainingJob,
    accelerate: AccelerateConfig | None,
    placement: Placement,
    progress: Callable[[TrainProgress], None],
    on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """Run the worker to completion, forwarding its progress (and its checkpoints to
    `on_checkpoint`); WorkerFailed when it fails."""
    workdir = Path(job.scratch) / ".job"  # inside scratch: a killed run's leftovers go with it
    workdir.mkdir()
    job_file, log_file = workdir / "job.json", workdir / "worker.log"
    job.write(job_file)
    command = worker_command(job_file, accelerate, placement, free_port())
    try:
        with open(log_file, "w", encoding="utf-8") as log:
            env = worker_environment(placement)
            error, returncode = _run(command, env, log, progress, on_checkpoint)
        if error is not None:
            raise WorkerFailed(error)
        if returncode != 0:
            tail = log_file.read_text(encoding="utf-8", errors="replace")[-LOG_TAIL_CHARS:]
            raise WorkerFailed(
                f"the training process exited with code {returncode}; the end of its output:\n{tail}"
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run(
    command: list[str],
    env: dict[str, str],
    log: Any,
    progress: Callable[[TrainProgress], None],
    on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[str | None, int]:
    """The child's own error message (the first one, if any) and its exit code."""
    error = None
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=log, env=env, text=True, bufsize=1
    ) as child:
        assert child.stdout is not None
        for line in child.stdout:
            if line.startswith(PROGRESS_PREFIX):
                progress(TrainProgress(**json.loads(line[len(PROGRESS_PREFIX) :])))
            elif line.startswith(CHECKPOINT_PREFIX) and on_checkpoint is not None:
                on_checkpoint(json.loads(line[len(CHECKPOINT_PREFIX) :]))
            elif line.startswith(ERROR_PREFIX):
                error = error or json.loads(line[len(ERROR_PREFIX) :])["message"]
            else:
                log.write(line)
        return error, child.wait()


# --- the child's side of the protocol --------------------------------------------------------


def is_main_process() -> bool:
    """Rank 0 of an accelerate launch, or a plain child (no RANK)."""
    return os.environ.get("RANK", "0") == "0"


def report_progress(update: TrainProgress) -> None:
    print(PROGRESS_PREFIX + json.dumps(asdict(update)), flush=True)


def report_checkpoint(step: int, total: int, directory: Path) -> None:
    payload = {"step": step, "total": total, "dir": str(directory)}
    print(CHECKPOINT_PREFIX + json.dumps(payload), flush=True)


def report_error(exc: BaseException) -> None:
    message = f"{type(exc).__name__}: {exc}"
    print(ERROR_PREFIX + json.dumps({"message": message}), flush=True)


__all__ = [
    "AccelerateConfig",
    "Placement",
    "TrainingJob",
    "WorkerFailed",
    "train_in_child",
    "worker_command",
]
