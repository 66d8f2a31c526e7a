"""`rloo`: REINFORCE Leave-One-Out (trl RLOOTrainer) on prompts and a reward.

Like `grpo`, it samples a group of `num_generations` completions per prompt and scores each with
the harness's reward, `request.reward(completions, rows)` (`rows`: the training rows the
completions answer, each repeated once per completion of its group); each completion's baseline is
the mean reward of the others in its group. A LoRA adapter by default (the KL reference is the
base with the adapter switched off); `adapter: full` trains all weights, against a frozen copy of
the base when beta > 0. Everything but the trainer, beta's default and `normalize_advantages` is
grpo's.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import Field

from harness.backends import TrainRequest, TrainResult, grpo
from harness.backends.common import TrainerBackend, trains_lora


class Config(grpo.Config):
    beta: float = Field(
        0.05, ge=0, description="KL coefficient (trl's default; 0: no reference model)"
    )
    normalize_advantages: bool = Field(
        False, description="Scale advantages to mean 0, std 1 per generation batch"
    )


def problems(config: Config) -> list[str]:
    return grpo.group_problems(
        config,
        "RLOO's baseline for a completion is the mean reward of the others in its group",
    )


def reward_function(request: TrainRequest) -> Callable[..., list[float | None]]:
    """trl's reward signature (RLOO calls it as GRPO does), over the harness's reward."""
    if request.reward is None:
        raise ValueError("the rloo backend needs a reward (the suite's `reward:`)")
    return grpo.reward_function(request)


def train(request: TrainRequest) -> TrainResult:
    from trl import RLOOConfig, RLOOTrainer

    config: Config = request.config
    return grpo.train_group(
        request,
        RLOOConfig,
        RLOOTrainer,
        reward_function,
        normalize_advantages=config.normalize_advantages,
    )


BACKEND = TrainerBackend(
    "rloo", Config, grpo.required_fields, problems, train, trains_lora, grpo.memory_profile,
    needs_reward=True,
)  # fmt: skip
