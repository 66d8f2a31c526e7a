"""A suite once loaded: its spec, its checks with their cases, its models and trainings."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from harness.backends import Backend
from harness.checks import Case, CheckSpec, CheckType
from harness.suite._schema import Checkpoints, Replay, RewardSpec, SuiteBase


@dataclass(frozen=True)
class PlannedCheck:
    capability: str
    label: str
    check: CheckType[Any]
    spec: CheckSpec
    cases: tuple[Case, ...]


@dataclass(frozen=True)
class LoadedSuite:
    path: Path
    text: str
    hash: str  # the suite text and every data file it reads
    spec: SuiteBase  # an instance of suite_model()
    checks: tuple[PlannedCheck, ...]
    models: dict[str, str]  # "base" and each evaluated candidate -> resolved model reference
    trainings: dict[str, PlannedTraining] = field(default_factory=dict)  # trained candidates

    @property
    def name(self) -> str:
        return str(self.spec.name)

    def only(self, capabilities: Sequence[str] | None) -> LoadedSuite:
        """The suite as a model evaluated on these capabilities alone sees it (None: all)."""
        if capabilities is None:
            return self
        kept = [c for c in self.spec.capabilities if c.name in capabilities]
        spec = self.spec.model_copy(update={"capabilities": kept})
        checks = tuple(p for p in self.checks if p.capability in capabilities)
        return replace(self, spec=spec, checks=checks)

    def on_ray(self, address: str) -> LoadedSuite:
        """The suite run on a Ray cluster (`--ray ADDRESS`; `local`: one started for the run),
        its other `execution:` settings kept."""
        execution = self.spec.execution.model_copy(
            update={"engine": "ray", "address": None if address == "local" else address}
        )
        return replace(self, spec=self.spec.model_copy(update={"execution": execution}))


@dataclass(frozen=True)
class AccelerateConfig:
    """A candidate's `accelerate:` block, resolved against the suite's directory."""

    num_processes: int
    config_file: Path | None
    args: tuple[str, ...] = ()

    def key(self) -> dict[str, Any]:
        """What of the launch decides the weights: the process count (the global batch) and
        the config's content (FSDP vs DDP, its precision), not where the file lives."""
        text = self.config_file.read_bytes() if self.config_file is not None else b""
        return {
            "num_processes": self.num_processes,
            "config": hashlib.sha256(text).hexdigest(),
            "args": list(self.args),
        }


@dataclass(frozen=True)
class PlannedTraining:
    backend: Backend
    config: BaseModel  # an instance of backend.Config
    rows: tuple[dict[str, Any], ...]
    data_hash: str
    reward: RewardSpec | None
    merge: bool
    accelerate: AccelerateConfig | None = None  # train through `accelerate launch`
    checkpoints: Checkpoints | None = None  # evaluate while training (harness.run._checkpoints)
    # What checkpoint evaluations depend on (the capabilities evaluated, their gates and cases):
    # part of the artifact key, since `select` and `stop_on` decide the weights from them.
    checkpoint_hash: str | None = None
    replay: Replay | None = None
    replay_rows: int = 0  # rows of `replay.data` mixed into `rows` (counted in them)
    # Trained candidates this one needs first (a reward model), in the order they are named
    depends_on: tuple[str, ...] = ()
