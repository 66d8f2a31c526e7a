"""`lora`: a peft LoRA (or DoRA) adapter trained by trl's SFTTrainer on prompt/completion rows,
or with `task: classification` an adapter plus a classification head (peft SEQ_CLS, the head in
`modules_to_save`) trained by transformers' Trainer on text/label rows."""

from __future__ import annotations

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
    LoraArgs,
    SFTArgs,
    TrainerBackend,
    adapter_shape,
    init_problems,
    lora_problems,
    train_sft,
)


class Config(SFTArgs, LoraArgs, TaskArgs):
    learning_rate: float = Field(2e-4, gt=0)


def problems(config: Config) -> list[str]:
    # trl's lm_head caveat is SFT's; PiSSA/OLoRA's limits hold for a classifier too
    sft = lora_problems(config) if config.task == "causal_lm" else init_problems(config)
    return sft + task_problems(config) + acceleration_problems(config)


def train(request: TrainRequest) -> TrainResult:
    config: Config = request.config
    if config.task == "classification":
        return train_classifier(request, config, lora=config)
    return train_sft(request, config, lora=config, quantize=False)


def trains_adapter(config: Config) -> bool:
    return True


def memory_profile(config: Config) -> MemoryProfile:
    return MemoryProfile(adapter=adapter_shape(config))


BACKEND = TrainerBackend(
    "lora", Config, required_fields, problems, train, trains_adapter, memory_profile
)
