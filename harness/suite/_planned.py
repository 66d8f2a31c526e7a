"""A suite once loaded: its spec, its checks with their cases, its models and trainings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.checks import Case, CheckSpec, CheckType


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
    spec: Any  # an instance of suite_model()
    checks: tuple[PlannedCheck, ...]
    models: dict[str, str]  # "base" and each evaluated candidate -> resolved model reference
    trainings: dict[str, Any] = field(default_factory=dict)  # name -> training_plan.PlannedTraining

    @property
    def name(self) -> str:
        return str(self.spec.name)
