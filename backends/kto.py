"""`kto`: Kahneman-Tversky Optimization (trl KTOTrainer) on unpaired prompt/completion rows, each
labelled desirable (`label: true`) or undesirable (`label: false`).

A LoRA adapter by default (the reference is the base, with the adapter switched off);
`adapter: full` trains all weights against a frozen copy of the base. trl estimates KTO's KL term
from mismatched pairs: each prompt with the completion of its neighbour in the micro-batch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import Field

from harness.backends import DataProblem, MemoryProfile, TrainRequest, TrainResult
from harness.backends.acceleration import acceleration_problems
from harness.backends.common import (
    QuantizableAdapterArgs,
    TrainerBackend,
    TrainingArgs,
    adapter_problems,
    adapter_shape,
    last_logged,
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

# What trl logs of KTO's terms, kept in the candidate's record (training.method).
LOGGED = ("kl", "rewards/chosen", "rewards/rejected", "rewards/margins")
# Per step: the policy on the KL pairs, the reference on the completions and on the KL pairs.
NO_GRAD_FORWARDS = 3


class Config(TrainingArgs, QuantizableAdapterArgs):
    learning_rate: float = Field(5e-5, gt=0)
    beta: float = Field(0.1, gt=0, description="Strength of the pull towards the reference")
    desirable_weight: float = Field(
        1.0, gt=0, description="Weight of the desirable rows' losses (balances unequal counts)"
    )
    undesirable_weight: float = Field(
        1.0, gt=0, description="Weight of the undesirable rows' losses (balances unequal counts)"
    )
    max_length: int | None = Field(512, ge=1, description="Truncate prompt+completion tokens")


def required_fields(config: Config) -> set[str]:
    return {"prompt", "completion", "label"}


def problems(config: Config) -> list[str]:
    found = adapter_problems(config, reference=True)
    if config.per_device_train_batch_size < 2:
        found.append(
            "KTO estimates its KL term by pairing each prompt with another row's completion in "
            f"the micro-batch: per_device_train_batch_size must be at least 2 (got "
            f"{config.per_device_train_batch_size})"
        )
    return found + acceleration_problems(config)


def data_problems(config: Config, rows: Sequence[dict[str, Any]]) -> list[DataProblem]:
    """Labels are JSON booleans (a "true" string would be desirable and so would "false"), and
    both kinds are present: KTO pushes desirable completions up and undesirable ones down."""
    found = [
        DataProblem(
            f"label must be true (desirable) or false (undesirable), got {json.dumps(row['label'])}",
            index,
        )
        for index, row in enumerate(rows)
        if not isinstance(row["label"], bool)
    ]
    if found:
        return found
    desirable = sum(1 for row in rows if row["label"])
    undesirable = len(rows) - desirable
    if desirable == 0 or undesirable == 0:
        found.append(
            DataProblem(
                "KTO needs both desirable (label: true) and undesirable (label: false) rows; "
                f"this data has {desirable} desirable and {undesirable} undesirable"
            )
        )
    return found


def train(request: TrainRequest) -> TrainResult:
    from trl import KTOConfig, KTOTrainer

    config: Config = request.config
    device = pick_device()
    plan = plan_acceleration(config, request, device)
    tokenizer = load_tokenizer(request.base_dir)
    labels = [bool(row["label"]) for row in request.rows]
    dataset = prompt_dataset(request, tokenizer, ["completion"]).add_column("label", labels)
    # trl reads KTO rows in order (a row's KL pair is its neighbour in the micro-batch): shuffled
    # once by the seed, so a file sorted by label still gives batches of both kinds.
    dataset = dataset.shuffle(seed=request.seed)
    args = KTOConfig(
        **trainer_arguments(config, request, device, plan),
        model_init_kwargs=model_init_kwargs(plan),
        beta=config.beta,
        desirable_weight=config.desirable_weight,
        undesirable_weight=config.undesirable_weight,
        max_length=config.max_length,
    )
    lora = trains_lora(config)

    def make_trainer(callbacks: list[Any]) -> Any:
        return KTOTrainer(
            model=str(request.base_dir),
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=callbacks,
            peft_config=lora_config(config) if lora else None,
            quantization_config=quantization_config(plan) if config.quantization else None,
        )

    def details(trainer: Any) -> dict[str, Any]:
        return {
            "desirable_rows": sum(labels),
            "undesirable_rows": len(labels) - sum(labels),
            "beta": config.beta,
            "desirable_weight": config.desirable_weight,
            "undesirable_weight": config.undesirable_weight,
            **last_logged(trainer, LOGGED),
        }

    return train_with(make_trainer, request, plan, details)


def memory_profile(config: Config) -> MemoryProfile:
    """One completion per row trains; the reference is the base with the adapter switched off,
    or with `adapter: full` a frozen copy of it. Each step also runs three forwards without
    gradients over the micro-batch (the policy on the KL pairs, the reference on the completions
    and on the KL pairs), one at a time, while the policy's activations are held."""
    adapter = adapter_shape(config) if trains_lora(config) else None
    return MemoryProfile(
        adapter=adapter,
        quantized=config.quantization == "4bit",
        answer_fields=("completion",),
        reference_copy=adapter is None,
        no_grad_forwards=NO_GRAD_FORWARDS,
    )


BACKEND = TrainerBackend(
    "kto",
    Config,
    required_fields,
    problems,
    train,
    trains_lora,
    memory_profile,
    data_problems=data_problems,
)
