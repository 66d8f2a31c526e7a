"""`full`: supervised fine-tuning of all weights (trl SFTTrainer) on prompt/completion rows."""

from __future__ import annotations

from pydantic import Field

from harness.backends import BACKENDS, TrainRequest, TrainResult
from harness.backends.common import (
    FULL_4BIT,
    SFT_FIELDS,
    Quantization,
    SFTArgs,
    TrainerBackend,
    train_sft,
)


class Config(SFTArgs):
    learning_rate: float = Field(2e-5, gt=0)
    # Only so that "QLoRA with full" can be written, and refused by `problems`.
    quantization: Quantization | None = None


def required_fields(config: Config) -> set[str]:
    return set(SFT_FIELDS)


def problems(config: Config) -> list[str]:
    return [FULL_4BIT] if config.quantization == "4bit" else []


def train(request: TrainRequest) -> TrainResult:
    config: Config = request.config
    return train_sft(request, config, lora=None, quantize=False)


BACKEND = BACKENDS.register("full")(
    TrainerBackend("full", Config, required_fields, problems, train)
)
