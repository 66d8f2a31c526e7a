"""Candidates that need another trained first (`reward: {model: NAME}`): validated at the suite's
line, trained after what they need, once per run, and failing with the name of what failed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers.training import problems, write

from harness.suite import LoadedSuite, load_suite
from harness.training import Trainings, in_dependency_order

RM = "- {name: rm, backend: reward_model, data: prefs, capabilities: [ranking], args: {max_steps: 2}}\n"
RL = """\
- name: rl
  backend: rloo
  data: new_facts
  reward: {model: rm}
  args: {num_generations: 2, per_device_train_batch_size: 2, max_steps: 2}
"""
RANKING = "capabilities:\n  - name: ranking\n    checks: [{type: preference, data: prefs}]\n"


def with_ranking(tmp_path: Path, candidates: str) -> LoadedSuite:
    path = write(tmp_path, candidates)
    path.write_text(path.read_text().replace("capabilities:\n", RANKING, 1))
    return load_suite(path)


def test_a_reward_model_reward_names_a_reward_model_candidate(tmp_path: Path) -> None:
    unknown = problems(tmp_path, RL.replace("model: rm", "model: r"))
    assert any(
        "candidates[0].reward.model" in p and 'no trained candidate "r"' in p for p in unknown
    ), unknown
    sft = "- {name: sft, backend: lora, data: train}\n"
    not_one = problems(tmp_path, RL.replace("model: rm", "model: sft") + sft)
    assert any('"sft" trains with the lora backend, not a reward model' in p for p in not_one)
    both = problems(tmp_path, RL.replace("{model: rm}", "{model: rm, check: new_facts}"))
    assert any("give exactly one of `check`, `model` or `python`" in p for p in both), both


def test_the_reward_model_trains_first_and_once(tmp_path: Path) -> None:
    suite = with_ranking(tmp_path, RL + RM)
    assert suite.trainings["rl"].depends_on == ("rm",)
    calls: list[tuple[str, dict[str, Any]]] = []

    def train(name: str, placement: Any, dependencies: dict[str, Any]) -> str:
        calls.append((name, dict(dependencies)))
        return f"model of {name}"

    trainings = Trainings(suite, train, gpus=[])
    assert in_dependency_order(suite, ["rl"]) == ["rm", "rl"]  # what it needs comes first
    assert trainings.result("rl") == "model of rl"
    assert trainings.result("rm") == "model of rm"  # asked again: the same, not retrained
    assert calls == [("rm", {}), ("rl", {"rm": "model of rm"})]


def test_a_failed_dependency_fails_its_dependent_with_its_name(tmp_path: Path) -> None:
    suite = with_ranking(tmp_path, RL + RM)
    calls: list[str] = []

    def train(name: str, placement: Any, dependencies: dict[str, Any]) -> str:
        calls.append(name)
        raise RuntimeError("out of memory")

    trainings = Trainings(suite, train, gpus=[])
    with pytest.raises(Exception, match="it needs rm, whose training failed: RuntimeError"):
        trainings.result("rl")
    with pytest.raises(RuntimeError, match="out of memory"):
        trainings.result("rm")
    assert calls == ["rm"]  # tried once: its failure is kept for everyone who needs it
