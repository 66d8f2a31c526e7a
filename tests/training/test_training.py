"""Trained candidates: validation of `args:`, artifact reuse, isolation of failures, merging."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers.training import problems, write

from harness.store import Store
from harness.suite import load_suite

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "suites" / "data"


def test_bad_args_fail_validation_at_their_line(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "- name: l\n  backend: lora\n  data: train\n  args:\n    r: 4\n    lora_alhpa: 8\n",
    )
    assert len(found) == 1
    assert ":22:7: candidates[0].args.lora_alhpa: unknown key" in found[0]
    assert 'did you mean "lora_alpha"' in found[0]
    wrong_type = problems(tmp_path, "- {name: l, backend: lora, data: train, args: {r: many}}\n")
    assert "candidates[0].args.r" in wrong_type[0] and "'many'" in wrong_type[0]
    batch = problems(tmp_path, "- {name: l, backend: lora, data: train, args: {batch_size: 8}}\n")
    assert 'did you mean "per_device_train_batch_size"' in batch[0]
    rate = problems(tmp_path, "- {name: l, backend: lora, data: train, args: {lr: 0.1}}\n")
    assert 'did you mean "learning_rate"' in rate[0]


def test_impossible_combinations_are_refused_before_training(tmp_path: Path) -> None:
    grpo = "- {name: g, backend: grpo, data: new_facts, reward: {check: new_facts}, args: {num_generations: 1}}\n"
    assert any("num_generations" in p or "group" in p for p in problems(tmp_path, grpo))
    four_bit_full = "- {name: f, backend: full, data: train, args: {quantization: 4bit}}\n"
    assert any("4-bit" in p for p in problems(tmp_path, four_bit_full))
    no_rejected = problems(tmp_path, "- {name: d, backend: dpo, data: train}\n")
    assert "new_facts_train.jsonl:1: row has no field 'chosen', 'rejected'" in no_rejected[0]
    assert (
        "needs a `reward:`"
        in problems(tmp_path, "- {name: g, backend: grpo, data: new_facts}\n")[0]
    )
    python = "- {name: g, backend: grpo, data: new_facts, reward: {python: 'os:system'}}\n"
    assert "allow_python: true" in problems(tmp_path, python)[0]
    typo = "- {name: g, backend: grpo, data: new_facts, reward: {check: new_fact}}\n"
    assert 'did you mean "new_facts"' in problems(tmp_path, typo)[0]
    assert (
        'did you mean "lora"' in problems(tmp_path, "- {name: l, backend: lroa, data: train}\n")[0]
    )


def test_grpo_reward_is_the_suites_check(tmp_path: Path) -> None:
    from harness.training._train import build_reward

    suite = load_suite(
        write(
            tmp_path,
            "- {name: g, backend: grpo, data: new_facts, reward: {check: new_facts, metric: f1}}\n",
        )
    )
    reward = build_reward(suite, suite.trainings["g"])
    row = suite.trainings["g"].rows[0]
    answer = row["answers"][0]
    assert reward([f" {answer}", " nothing like it", f" the {answer}!"], [row, row, row]) == [
        1.0,
        0.0,
        1.0,
    ]


class ExplodingBackend:
    """A third-party backend that fails mid-training, as a crash or an OOM would."""

    name = "exploding"
    Config: Any = None
    needs_reward = False

    def __init__(self) -> None:
        from harness.core.strict import Strict

        self.Config = Strict

    def required_fields(self, _config: Any) -> set[str]:
        return {"prompt"}

    def problems(self, _config: Any) -> list[str]:
        return []

    def train(self, _request: Any) -> Any:
        raise RuntimeError("CUDA out of memory (simulated by a plugin that always fails)")


@pytest.fixture(scope="module")
def exploding() -> None:
    from harness.backends import BACKENDS

    if "exploding" not in BACKENDS.names():
        BACKENDS.register("exploding")(ExplodingBackend())


LORA = "- {name: lora, backend: lora, data: train, merge: true, args: {r: 4, learning_rate: 0.003, max_steps: 30}}\n"


@pytest.mark.slow
def test_a_failing_backend_leaves_the_others_intact_and_reruns_reuse_artifacts(
    tmp_path: Path, exploding: None, harness_home: Path
) -> None:
    from harness.run import run_suite

    suite = load_suite(write(tmp_path, "- {name: boom, backend: exploding, data: train}\n" + LORA))
    store = Store(tmp_path / "h.duckdb")
    first = run_suite(suite, store, retrain=True)
    assert first.exit_code == 3
    verdicts = {c.record.name: c.verdict for c in first.candidates}
    assert (
        verdicts["boom"] == "error"
        and verdicts["lora"] != "error"
        and verdicts["lora+merged"] != "error"
    )
    boom = store.load_run(first.run_id).model("boom")
    assert "training failed: RuntimeError: CUDA out of memory" in (boom.error or "")

    lora = next(c for c in first.candidates if c.record.name == "lora")
    training = lora.record.info["training"]
    assert (
        training["backend"] == "lora"
        and training["trainable_parameters"] < training["total_parameters"]
    )
    assert training["reused_artifact"] is False and training["peak_memory_bytes"] > 0
    assert training["tokens_per_second"] > 0 and training["artifact_bytes"] > 0
    assert len(store.load_run(first.run_id).loss_curves["lora"]) == 30
    assert lora.record.info["merge_agreement"]["rate"] == 1.0  # LoRA merges exactly

    second = run_suite(suite, store)
    lora_again = next(c for c in second.candidates if c.record.name == "lora")
    assert lora_again.record.info["training"]["reused_artifact"] is True
    assert lora_again.metrics == lora.metrics

    retrained = run_suite(suite, store, retrain=True)  # same seed on the CPU: the same model
    lora_retrained = next(c for c in retrained.candidates if c.record.name == "lora")
    assert lora_retrained.record.info["training"]["reused_artifact"] is False
    assert lora_retrained.metrics == lora.metrics
    assert lora_retrained.record.fingerprint == lora.record.fingerprint
