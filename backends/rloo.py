"""`rloo`: REINFORCE Leave-One-Out (trl RLOOTrainer) on prompts and a reward.

Like `grpo`, it samples a group of `num_generations` completions per prompt and scores each with
the harness's reward, `request.reward(completions, rows)` (`rows`: the training rows the
completions answer, each repeated once per completion of its group); each completion's baseline is
the mean reward of the others in its group. A LoRA adapter by default (the KL reference is the
base with the adapter switched off); `adapter: full` trains all weights, against a frozen copy of
the base when beta > 0.
"""

from __future__ import annotations

from collections.abc import Callable
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
from harness.backends.grpo import ROW_INDEX
from harness.backends.grpo import reward_function as grpo_reward_function
from harness.core.device import pick_device


class Config(TrainingArgs, LoraArgs):
    learning_rate: float = Field(1e-5, gt=0)
    adapter: Literal["lora", "full"] = "lora"
    num_generations: int = Field(4, description="Group size: completions sampled per prompt")
    max_completion_length: int = Field(32, ge=1)
    temperature: float = Field(1.0, gt=0)
    beta: float = Field(
        0.05, ge=0, description="KL coefficient (trl's default; 0: no reference model)"
    )
    normalize_advantages: bool = Field(
        False, description="Scale advantages to mean 0, std 1 per generation batch"
    )
    generation_batch_size: int | None = Field(
        None, ge=1, description="Completions per generation round (default: the batch size)"
    )
    quantization: Quantization | None = Field(None, description='"4bit": QLoRA-style base')


def required_fields(config: Config) -> set[str]:
    return {"prompt"}


def generation_batch(config: Config) -> int:
    """trl 1.16's RLOOConfig rule (one process): per-device batch x accumulation steps
    (`steps_per_generation` defaults to the accumulation steps), unless given."""
    if config.generation_batch_size is not None:
        return config.generation_batch_size
    return config.per_device_train_batch_size * config.gradient_accumulation_steps


def problems(config: Config) -> list[str]:
    """RLOOConfig.__post_init__'s refusals, found before anything trains."""
    found = [FULL_4BIT] if config.adapter == "full" and config.quantization == "4bit" else []
    found += lora_problems(config, reference=config.beta > 0) if config.adapter == "lora" else []
    if config.num_generations < 2:
        found.append(
            f"num_generations is {config.num_generations}: RLOO's baseline for a completion is "
            "the mean reward of the others in its group, so it needs at least 2"
        )
    batch = generation_batch(config)
    if config.num_generations >= 2 and batch % config.num_generations:
        found.append(
            f"the generation batch ({batch} completions: {generation_batch_rule(config)}) must be "
            f"a multiple of num_generations ({config.num_generations})"
        )
    if batch % config.per_device_train_batch_size:
        found.append(
            f"generation_batch_size ({batch}) must be a multiple of per_device_train_batch_size "
            f"({config.per_device_train_batch_size})"
        )
    return found + acceleration_problems(config)


def generation_batch_rule(config: Config) -> str:
    if config.generation_batch_size is not None:
        return "generation_batch_size"
    return (
        f"per_device_train_batch_size {config.per_device_train_batch_size} x "
        f"gradient_accumulation_steps {config.gradient_accumulation_steps}"
    )


def reward_function(request: TrainRequest) -> Callable[..., list[float | None]]:
    """trl's reward signature (RLOO calls it as GRPO does), over the harness's reward."""
    if request.reward is None:
        raise ValueError("the rloo backend needs a reward (the suite's `reward:`)")
    return grpo_reward_function(request)


def train(request: TrainRequest) -> TrainResult:
    from trl import RLOOConfig, RLOOTrainer

    config: Config = request.config
    device = pick_device()
    plan = plan_acceleration(config, request, device)
    tokenizer = load_tokenizer(request.base_dir)
    dataset = build_dataset(
        request.rows, ["prompt"], [], uses_chat(request, tokenizer), request.system_prompt
    )
    dataset = dataset.add_column(ROW_INDEX, list(range(len(request.rows))))
    args = RLOOConfig(
        **trainer_arguments(config, request, device, plan),
        model_init_kwargs=model_init_kwargs(plan),
        num_generations=config.num_generations,
        max_completion_length=config.max_completion_length,
        temperature=config.temperature,
        beta=config.beta,
        normalize_advantages=config.normalize_advantages,
        generation_batch_size=config.generation_batch_size,
    )
    lora = config.adapter == "lora"

    def make_trainer(callbacks: list[Any]) -> Any:
        return RLOOTrainer(
            model=str(request.base_dir),
            reward_funcs=reward_function(request),
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
    """Generates `generation_batch` completions at once, then scores only their tokens; with
    `adapter: full` and a KL term (beta > 0) it also holds a frozen copy of the base (an adapter
    is switched off instead)."""
    adapter = adapter_shape(config) if trains_adapter(config) else None
    return MemoryProfile(
        adapter=adapter,
        quantized=config.quantization == "4bit",
        answer_fields=(),
        reference_copy=adapter is None and config.beta > 0,
        generated_sequences=generation_batch(config),
        completion_tokens=config.max_completion_length,
    )


BACKEND = TrainerBackend(
    "rloo", Config, required_fields, problems, train, trains_adapter, memory_profile,
    needs_reward=True,
)  # fmt: skip
