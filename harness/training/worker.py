"""The training child: `python -m harness.training.worker JOB.json`, alone or under `accelerate
launch`. It reloads the suite, checks it is the one the parent planned, and trains the candidate
into the parent's scratch directory (harness.training._launch describes the protocol)."""

from __future__ import annotations

import sys
from pathlib import Path

from harness.core.errors import HarnessError
from harness.core.noise import quiet_harmless_messages
from harness.suite import load_suite
from harness.training._launch import TrainingJob, is_main_process, report_error, report_progress
from harness.training._train import train_into


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m harness.training.worker JOB.json", file=sys.stderr)
        return 2
    job = TrainingJob.read(Path(args[0]))
    quiet_harmless_messages()
    try:
        train(job)
    except BaseException as exc:  # every failure goes back to the parent, in words
        report_error(exc)
        return 1
    return 0


def train(job: TrainingJob) -> None:

    suite = load_suite(job.suite_path, base_override=job.base_reference)
    if suite.hash != job.suite_hash:
        raise HarnessError(
            f"{job.suite_path} or its data changed after the run began; run it again"
        )
    progress = report_progress if is_main_process() else (lambda _: None)
    dependencies = {name: Path(path) for name, path in job.dependencies.items()}
    train_into(
        Path(job.scratch), suite, job.candidate, Path(job.base_dir), progress, None, dependencies
    )


if __name__ == "__main__":
    sys.exit(main())
