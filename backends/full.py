"""`full`: all weights, either supervised fine-tuning of a causal LM (trl SFTTrainer) on
prompt/completion rows, or with `task: classification` a sequence-classification model
(transformers' Trainer) on text/label rows. `freeze:` trains only part of the weights of the
causal LM, or unfreezes them gradually (harness.backends.freezing)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from harness.backends import MemoryProfile, TrainRequest, TrainResult
from harness.backends.acceleration import acceleration_problems
from harness.backends.classification import (
    TaskArgs,
    required_fields,
    task_problems,
    train_classifier,
)
from harness.backends.common import (
    FULL_4BIT,
    Quantization,
    SFTArgs,
    TrainerBackend,
    train_sft,
)
from harness.backends.freezing import (
    FreezeArgs,
    freeze_base_problems,
    freeze_problems,
    frozen_layers,
    train_frozen,
)


class Config(SFTArgs, TaskArgs):
    learning_rate: float = Field(2e-5, gt=0)
    # Only so that "QLoRA with full" can be written, and refused by `problems`.
    quantization: Quantization | None = None
    freeze: FreezeArgs | None = Field(
        None,
        description="Train only part of the weights: the last layers, only attention or MLP "
        "blocks, or layer groups unfrozen gradually (default: every weight trains)",
    )


def problems(config: Config) -> list[str]:
    found = [FULL_4BIT] if config.quantization == "4bit" else []
    return found + task_problems(config) + acceleration_problems(config) + freeze_problems(config)


def base_problems(config: Config, base_config: dict[str, Any]) -> list[str]:
    """What the base's config.json refuses: a freezing schedule naming layers it lacks."""
    return freeze_base_problems(config, base_config)


def train(request: TrainRequest) -> TrainResult:
    config: Config = request.config
    if config.task == "classification":
        return train_classifier(request, config, lora=None)
    if config.freeze is not None:
        return train_frozen(request, config)
    return train_sft(request, config, lora=None, quantize=False)


def trains_adapter(config: Config) -> bool:
    return False


def memory_profile(config: Config) -> MemoryProfile:
    return MemoryProfile(frozen=frozen_layers(config))


BACKEND = TrainerBackend(
    "full", Config, required_fields, problems, train, trains_adapter, memory_profile,
    base_problems=base_problems,
)  # fmt: skip
