"""`lora`: a peft LoRA (or DoRA) adapter trained by trl's SFTTrainer on prompt/completion rows."""

from __future__ import annotations

from pydantic import Field

from harness.backends import BACKENDS, TrainRequest, TrainResult
from harness.backends.common import (
    SFT_FIELDS,
    LoraArgs,
    SFTArgs,
    TrainerBackend,
    lora_problems,
    train_sft,
)


class Config(SFTArgs, LoraArgs):
    learning_rate: float = Field(2e-4, gt=0)


def required_fields(config: Config) -> set[str]:
    return set(SFT_FIELDS)


def problems(config: Config) -> list[str]:
    return lora_problems(config)


def train(request: TrainRequest) -> TrainResult:
    config: Config = request.config
    return train_sft(request, config, lora=config, quantize=False)


BACKEND = BACKENDS.register("lora")(
    TrainerBackend("lora", Config, required_fields, problems, train)
)
