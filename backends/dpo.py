"""`dpo`: Direct Preference Optimization (trl DPOTrainer) on prompt/chosen/rejected pairs.

A LoRA adapter by default (the reference is the base, with the adapter switched off);
`adapter: full` trains all weights against a frozen copy of the base.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from harness.backends import MemoryProfile, TrainRequest, TrainResult
from harness.backends.acceleration import acceleration_problems
from harness.backends.common import (
    QuantizableAdapterArgs,
    TrainerBackend,
    TrainingArgs,
    adapter_problems,
    adapter_shape,
    load_tokenizer,
    lora_config,
    model_init_kwargs,
    plan_acceleration,
    prompt_dataset,
    quantization_config,
    train_with,
    trainer_arguments,
    trains_lora,
)
from harness.core.device import pick_device

# trl 1.16's DPO losses that need no extra settings (exo_pair needs label smoothing).
DPOLoss = Literal[
    "sigmoid",
    "hinge",
    "ipo",
    "robust",
    "bco_pair",
    "sppo_hard",
    "nca_pair",
    "aot",
    "aot_unpaired",
    "apo_zero",
    "apo_down",
    "discopop",
    "sigmoid_norm",
]


class Config(TrainingArgs, QuantizableAdapterArgs):
    learning_rate: float = Field(5e-5, gt=0)
    beta: float = Field(0.1, gt=0, description="Strength of the pull towards the reference")
    loss_type: DPOLoss = "sigmoid"
    max_length: int | None = Field(512, ge=1, description="Truncate prompt+answer tokens")


def required_fields(config: Config) -> set[str]:
    return {"prompt", "chosen", "rejected"}


def problems(config: Config) -> list[str]:
    return adapter_problems(config, reference=True) + acceleration_problems(config)


def train(request: TrainRequest) -> TrainResult:
    from trl import DPOConfig, DPOTrainer

    config: Config = request.config
    device = pick_device()
    plan = plan_acceleration(config, request, device)
    tokenizer = load_tokenizer(request.base_dir)
    dataset = prompt_dataset(request, tokenizer, ["chosen", "rejected"])
    args = DPOConfig(
        **trainer_arguments(config, request, device, plan),
        model_init_kwargs=model_init_kwargs(plan),
        beta=config.beta,
        loss_type=[config.loss_type],
        max_length=config.max_length,
    )
    lora = trains_lora(config)

    def make_trainer(callbacks: list[Any]) -> Any:
        return DPOTrainer(
            model=str(request.base_dir),
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=callbacks,
            peft_config=lora_config(config) if lora else None,
            quantization_config=quantization_config(plan) if config.quantization else None,
        )

    return train_with(make_trainer, request, plan)


def memory_profile(config: Config) -> MemoryProfile:
    """Chosen and rejected are two sequences per row; the reference is the base with the adapter
    switched off, or with `adapter: full` a frozen copy of it."""
    adapter = adapter_shape(config) if trains_lora(config) else None
    return MemoryProfile(
        adapter=adapter,
        quantized=config.quantization == "4bit",
        answer_fields=("chosen", "rejected"),
        reference_copy=adapter is None,
    )


BACKEND = TrainerBackend(
    "dpo", Config, required_fields, problems, train, trains_lora, memory_profile
)
