"""Training rows, one backend call, and a suite to add trained candidates to."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import harness.models.corpus
from harness.backends import BACKENDS, TrainProgress, TrainRequest, TrainResult
from harness.core.errors import HarnessError
from harness.core.progress import Reporter
from harness.suite import load_suite

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "suites" / "data"


def new_facts() -> list[dict[str, Any]]:
    path = Path(harness.models.corpus.__file__).parent / "update_facts.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()][:16]


def sft_rows() -> list[dict[str, Any]]:
    return [{"prompt": f["question"], "completion": " " + f["answer"]} for f in new_facts()]


def preference_rows() -> list[dict[str, Any]]:
    facts = new_facts()
    return [
        {
            "prompt": fact["question"],
            "chosen": " " + fact["answer"],
            "rejected": " " + facts[(i + 1) % len(facts)]["answer"],
        }
        for i, fact in enumerate(facts)
    ]


def train(
    backend: str,
    base: Path,
    out: Path,
    rows: list[dict[str, Any]],
    *,
    seed: int = 0,
    reward: Callable[[list[str], list[dict[str, Any]]], list[float]] | None = None,
    progress: Callable[[TrainProgress], None] = lambda _: None,
    chat_template: bool = False,
    **args: Any,
) -> TrainResult:
    spec = BACKENDS.get(backend)
    config = spec.Config(**args)
    assert spec.problems(config) == []
    request = TrainRequest(
        base_dir=base,
        rows=rows,
        config=config,
        seed=seed,
        output_dir=out,
        progress=progress,
        reward=reward,
        chat_template=chat_template,
    )
    return spec.train(request)


SUITE = f"""\
name: train-test
base: builtin:tiny
generation: {{max_new_tokens: 8}}
data:
  train: {{path: {DATA / "new_facts_train.jsonl"}}}
  prefs: {{path: {DATA / "new_facts_prefs.jsonl"}}}
  new_facts: {{path: {DATA / "new_facts.jsonl"}}}
  sums: {{path: {DATA / "sums.jsonl"}}}
capabilities:
  - name: new_facts
    improve: {{metric: qa.f1, min_gain: 0.0}}
    checks: [{{type: qa, data: new_facts}}]
  - name: arithmetic
    forgetting: {{metric: exact.acc, max_drop: 1.0}}
    checks: [{{type: exact, data: sums}}]
candidates:
"""


def write(tmp_path: Path, candidates: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE + textwrap.indent(textwrap.dedent(candidates), "  "))
    return path


def problems(tmp_path: Path, candidates: str) -> list[str]:
    with pytest.raises(HarnessError) as caught:
        load_suite(write(tmp_path, candidates))
    return caught.value.problems


class Stages(Reporter):
    """What a run's display was told, per model: its stages, and its training steps."""

    def __init__(self) -> None:
        self.stages: dict[str, list[str]] = {}
        self.steps: dict[str, list[int]] = {}

    def stage(self, model: str, stage: str, total: int | None = None) -> None:
        self.stages.setdefault(model, []).append(stage)

    def training(
        self, model: str, step: int, total: int, loss: float | None, phase: str = "training"
    ) -> None:
        self.steps.setdefault(model, []).append(step)
