"""`qlora`: a LoRA adapter on the base loaded in 4-bit NF4 with double quantisation
(bitsandbytes; it has a CPU path, where the compute dtype is float32).

Its arguments, rows and refusals are LoRA's (the Config is shared, `task` included); only the
base's weights differ, and classification heads are refused: the 4-bit path goes through trl's
SFTTrainer, which trains causal LMs only.
"""

from __future__ import annotations

from harness.backends import MemoryProfile, TrainRequest, TrainResult
from harness.backends import lora as lora_backend
from harness.backends.common import (
    TrainerBackend,
    adapter_shape,
    quantized_init_problems,
    train_sft,
)
from harness.backends.lora import Config, required_fields, trains_adapter

QLORA_CLASSIFICATION = (
    "task: classification is not supported by qlora (4-bit bases train causal LMs only); "
    "use the lora or full backend"
)


def problems(config: Config) -> list[str]:
    if config.task == "classification":
        return [QLORA_CLASSIFICATION]
    return lora_backend.problems(config) + quantized_init_problems(config)


def train(request: TrainRequest) -> TrainResult:
    config: Config = request.config
    return train_sft(request, config, lora=config, quantize=True)


def memory_profile(config: Config) -> MemoryProfile:
    return MemoryProfile(adapter=adapter_shape(config), quantized=True)


BACKEND = TrainerBackend(
    "qlora", Config, required_fields, problems, train, trains_adapter, memory_profile
)
