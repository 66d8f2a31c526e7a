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
    FULL_4BIT,
    LoraArgs,
    Quantization,
    TrainerBackend,
    TrainingArgs,
    adapter_shape,
    build_dataset,
    load_tokenizer,
    lora_config,
    lora_problems,
    model_init_kwargs,
    plan_acceleration,
    quantization_config,
    train_with,
    trainer_arguments,
    uses_chat,
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


class Config(TrainingArgs, LoraArgs):
    learning_rate: float = Field(5e-5, gt=0)
    adapter: Literal["lora", "full"] = "lora"
    beta: float = Field(0.1, gt=0, description="Strength of the pull towards the reference")
    loss_type: DPOLoss = "sigmoid"
    max_length: int | None = Field(512, ge=1, description="Truncate prompt+answer tokens")
    quantization: Quantization | None = Field(None, description='"4bit": QLoRA-style base')


def required_fields(config: Config) -> set[str]:
    return {"prompt", "chosen", "rejected"}


def problems(config: Config) -> list[str]:
    found = [FULL_4BIT] if config.adapter == "full" and config.quantization == "4bit" else []
    found += lora_problems(config, reference=True) if config.adapter == "lora" else []
    return found + acceleration_problems(config)


def train(request: TrainRequest) -> TrainResult:
    from trl import DPOConfig, DPOTrainer

    config: Config = request.config
    device = pick_device()
    plan = plan_acceleration(config, request, device)
    tokenizer = load_tokenizer(request.base_dir)
    dataset = build_dataset(
        request.rows,
        ["prompt"],
        ["chosen", "rejected"],
        uses_chat(request, tokenizer),
        request.system_prompt,
    )
    args = DPOConfig(
        **trainer_arguments(config, request, device, plan),
        model_init_kwargs=model_init_kwargs(plan),
        beta=config.beta,
        loss_type=[config.loss_type],
        max_length=config.max_length,
    )
    lora = config.adapter == "lora"

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


def trains_adapter(config: Config) -> bool:
    return config.adapter == "lora"


def memory_profile(config: Config) -> MemoryProfile:
    """Chosen and rejected are two sequences per row; the reference is the base with the adapter
    switched off, or with `adapter: full` a frozen copy of it."""
    adapter = adapter_shape(config) if trains_adapter(config) else None
    return MemoryProfile(
        adapter=adapter,
        quantized=config.quantization == "4bit",
        answer_fields=("chosen", "rejected"),
        reference_copy=adapter is None,
    )


BACKEND = TrainerBackend(
    "dpo", Config, required_fields, problems, train, trains_adapter, memory_profile
)
