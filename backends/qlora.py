"""`qlora`: a LoRA adapter on the base loaded in 4-bit NF4 with double quantisation
(bitsandbytes; it has a CPU path, where the compute dtype is float32).

Its arguments, rows and refusals are exactly LoRA's; only the base's weights differ.
"""

from __future__ import annotations

from harness.backends import BACKENDS, TrainRequest, TrainResult
from harness.backends.common import TrainerBackend, train_sft
from harness.backends.lora import Config, problems, required_fields


def train(request: TrainRequest) -> TrainResult:
    config: Config = request.config
    return train_sft(request, config, lora=config, quantize=True)


BACKEND = BACKENDS.register("qlora")(
    TrainerBackend("qlora", Config, required_fields, problems, train)
)
