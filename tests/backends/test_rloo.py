"""The rloo backend: RLOOConfig's batch rules found at validation time, and RLOO training on
builtin:tiny rewarded by a check of its suite."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from harness.backends import BACKENDS, TrainRequest
from harness.backends.common import FULL_4BIT
from harness.core.errors import HarnessError
from harness.suite import load_suite

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "suites" / "data"

SUITE = f"""\
name: rloo-test
base: builtin:tiny
generation: {{max_new_tokens: 8}}
data:
  known_facts: {{path: {DATA / "known_facts.jsonl"}}}
capabilities:
  - name: known_facts
    checks: [{{type: qa, data: known_facts}}]
candidates:
"""


def suite_file(tmp_path: Path, candidate: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE + textwrap.indent(textwrap.dedent(candidate), "  "))
    return path


# ---- configuration: no training --------------------------------------------------------------

# (args, a phrase of the problem; None: trains)
SETTINGS: list[tuple[dict[str, Any], str | None]] = [
    ({}, None),
    ({"num_generations": 2, "per_device_train_batch_size": 2}, None),
    ({"generation_batch_size": 16}, None),
    ({"num_generations": 1}, "at least 2"),
    ({"num_generations": 3}, "(8 completions: per_device_train_batch_size 8 x"),
    ({"num_generations": 4, "per_device_train_batch_size": 2}, "multiple of num_generations (4)"),
    (
        {"num_generations": 4, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 2},
        None,
    ),
    ({"generation_batch_size": 12}, "multiple of per_device_train_batch_size (8)"),
    ({"generation_batch_size": 6, "per_device_train_batch_size": 2}, "(6 completions"),
]


@pytest.mark.parametrize(("args", "problem"), SETTINGS)
def test_problems_are_rlooconfigs_refusals(
    args: dict[str, Any], problem: str | None, tmp_path: Path
) -> None:
    """Each refusal of trl 1.16's RLOOConfig is found before training, and nothing else is."""
    from trl import RLOOConfig

    backend = BACKENDS.get("rloo")
    config = backend.Config(**args)
    found = backend.problems(config)
    if problem is None:
        assert found == []
    else:
        assert len(found) == 1 and problem in found[0]
    batching = ("num_generations", "generation_batch_size", "per_device_train_batch_size")
    trl_args = {name: getattr(config, name) for name in (*batching, "gradient_accumulation_steps")}
    trl_args |= {"output_dir": str(tmp_path), "use_cpu": True}
    if found:
        with pytest.raises(ValueError):
            RLOOConfig(**trl_args)
    else:
        RLOOConfig(**trl_args)


def test_settings_and_profile() -> None:
    backend = BACKENDS.get("rloo")
    config = backend.Config()
    assert backend.needs_reward and backend.required_fields(config) == {"prompt"}
    assert backend.problems(backend.Config(adapter="full", quantization="4bit")) == [FULL_4BIT]
    profile = backend.memory_profile(config)
    assert profile.adapter is not None and not profile.reference_copy  # the adapter switched off
    assert profile.generated_sequences == 8 and profile.completion_tokens == 32
    full = backend.memory_profile(backend.Config(adapter="full"))
    assert (
        full.reference_copy
        and not backend.memory_profile(backend.Config(adapter="full", beta=0.0)).reference_copy
    )


def test_validation_refuses_at_the_candidates_line(tmp_path: Path) -> None:
    suite = suite_file(tmp_path, "- {name: r, backend: rloo, data: known_facts}\n")
    with pytest.raises(HarnessError) as info:
        load_suite(suite)
    assert (
        "suite.yaml:10:5: candidates[0]: the rloo backend needs a `reward:`"
        in info.value.problems[0]
    )
    suite = suite_file(
        tmp_path,
        "- {name: r, backend: rloo, data: known_facts, reward: {check: known_facts},\n"
        "   args: {num_generations: 3}}\n",
    )
    with pytest.raises(HarnessError) as info:
        load_suite(suite)
    assert "multiple of num_generations (3)" in "\n".join(info.value.problems)


# ---- training --------------------------------------------------------------------------------


@pytest.mark.slow
def test_rloo_trains_on_a_check_reward(tiny_dir: Path, tmp_path: Path) -> None:
    """Rewarded by the suite's qa check (f1) on facts the base knows: sampled answers are right
    or wrong, so groups disagree and the adapter moves."""
    from safetensors.torch import load_file

    from harness.checks import CHECKS, Case
    from harness.training._train import build_reward

    suite = load_suite(
        suite_file(
            tmp_path,
            """\
            - name: r
              backend: rloo
              data: known_facts
              reward: {check: known_facts, metric: f1}
              args: {max_steps: 2, learning_rate: 1.0e-2, per_device_train_batch_size: 8,
                     num_generations: 4, max_completion_length: 8}
            """,
        )
    )
    plan = suite.trainings["r"]
    reward = build_reward(suite, plan)
    assert reward is not None
    calls: list[tuple[list[str], list[dict[str, Any]], list[float]]] = []

    def recorded(completions: list[str], rows: list[dict[str, Any]]) -> list[float]:
        scores = reward(completions, rows)
        calls.append((completions, rows, scores))
        return scores

    request = TrainRequest(
        base_dir=tiny_dir, rows=plan.rows, config=plan.config, seed=0,
        output_dir=tmp_path / "model", reward=recorded,
    )  # fmt: skip
    result = plan.backend.train(request)
    assert len(calls) == 2  # one generation round per step
    qa = CHECKS.get("qa")
    spec = suite.checks[0].spec
    for completions, rows, scores in calls:
        assert len(completions) == len(rows) == 8  # 2 prompts x 4 completions
        assert [r["prompt"] for r in rows[:4]] == [rows[0]["prompt"]] * 4  # a group per prompt
        expected = [
            qa.score(c, Case("", r["prompt"], r, ""), spec).scores["f1"]  # type: ignore[misc]
            for c, r in zip(completions, rows, strict=True)
        ]
        assert scores == expected
    assert any(len(set(scores[:4])) > 1 or len(set(scores[4:])) > 1 for *_, scores in calls)
    adapter = load_file(str(result.model_dir / "adapter_model.safetensors"))
    assert any(v.abs().sum() > 0 for k, v in adapter.items() if "lora_B" in k)
    assert result.is_adapter and len(result.loss_curve) == 2 and result.train_tokens > 0
