"""`grpo`: Group Relative Policy Optimization (trl GRPOTrainer) on prompts and a reward.

The harness gives the reward as `request.reward(completions, rows)`: one float per completion,
`rows` being the training rows the completions answer (each row repeated once per completion of
its group). A LoRA adapter by default; `adapter: full` trains all weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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

ROW_INDEX = "harness_row"  # dataset column that maps each prompt back to its request row


class Config(TrainingArgs, QuantizableAdapterArgs):
    learning_rate: float = Field(1e-5, gt=0)
    num_generations: int = Field(4, description="Group size: completions sampled per prompt")
    max_completion_length: int = Field(32, ge=1)
    temperature: float = Field(1.0, gt=0)
    beta: float = Field(0.0, ge=0, description="KL coefficient (0: no reference model)")
    generation_batch_size: int | None = Field(
        None, ge=1, description="Completions per generation round (default: the batch size)"
    )


def required_fields(config: Config) -> set[str]:
    return {"prompt"}


def generation_batch(config: Config) -> int:
    """trl 1.16's rule for GRPO and RLOO (one process): per-device batch x accumulation steps
    (`steps_per_generation` defaults to the accumulation steps), unless given."""
    if config.generation_batch_size is not None:
        return config.generation_batch_size
    return config.per_device_train_batch_size * config.gradient_accumulation_steps


def problems(config: Config) -> list[str]:
    return group_problems(config, "GRPO compares completions within a group")


def group_problems(config: Config, why_two: str) -> list[str]:
    """trl's GRPOConfig/RLOOConfig refusals, found before anything trains; `why_two`: why the
    method needs at least 2 completions per group."""
    found = adapter_problems(config, reference=config.beta > 0)
    if config.num_generations < 2:
        found.append(
            f"num_generations is {config.num_generations}: {why_two}, so it needs at least 2"
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
    """trl's reward signature, calling the harness's reward with the rows behind the prompts."""
    if request.reward is None:
        raise ValueError("the grpo backend needs a reward (the suite's `reward:`)")
    reward = request.reward

    def harness_reward(completions: list[Any], **columns: Any) -> list[float | None]:
        rows = [dict(request.rows[i]) for i in columns[ROW_INDEX]]
        scores = reward([completion_text(c) for c in completions], rows)
        return [float(score) for score in scores]

    return harness_reward


def completion_text(completion: Any) -> str:
    """Conversational completions come as [{"role": "assistant", "content": ...}]."""
    if isinstance(completion, list):
        return "".join(str(message.get("content", "")) for message in completion)
    return str(completion)


def train(request: TrainRequest) -> TrainResult:
    from trl import GRPOConfig, GRPOTrainer

    return train_group(request, GRPOConfig, GRPOTrainer, reward_function)


def train_group(
    request: TrainRequest,
    config_class: type,
    trainer_class: type,
    rewards: Callable[[TrainRequest], Callable[..., list[float | None]]],
    **method_args: Any,
) -> TrainResult:
    """Train with trl's GRPOTrainer or RLOOTrainer (`config_class`, `trainer_class`), which take
    the same data, reward and settings; `method_args`: the method's own config arguments."""
    config: Config = request.config
    device = pick_device()
    plan = plan_acceleration(config, request, device)
    tokenizer = load_tokenizer(request.base_dir)
    dataset = prompt_dataset(request, tokenizer, [])
    dataset = dataset.add_column(ROW_INDEX, list(range(len(request.rows))))
    args = config_class(
        **trainer_arguments(config, request, device, plan),
        model_init_kwargs=model_init_kwargs(plan),
        num_generations=config.num_generations,
        max_completion_length=config.max_completion_length,
        temperature=config.temperature,
        beta=config.beta,
        generation_batch_size=config.generation_batch_size,
        **method_args,
    )
    lora = trains_lora(config)

    def make_trainer(callbacks: list[Any]) -> Any:
        return trainer_class(
            model=str(request.base_dir),
            reward_funcs=rewards(request),
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=callbacks,
            peft_config=lora_config(config) if lora else None,
            quantization_config=quantization_config(plan) if config.quantization else None,
        )

    return train_with(make_trainer, request, plan)


def memory_profile(config: Config) -> MemoryProfile:
    """Generates `generation_batch` completions at once, then scores only their tokens; with
    `adapter: full` and a KL term (beta > 0) it also holds a frozen copy of the base (an adapter
    is switched off instead)."""
    adapter = adapter_shape(config) if trains_lora(config) else None
    return MemoryProfile(
        adapter=adapter,
        quantized=config.quantization == "4bit",
        answer_fields=(),
        reference_copy=adapter is None and config.beta > 0,
        generated_sequences=generation_batch(config),
        completion_tokens=config.max_completion_length,
    )


BACKEND = TrainerBackend(
    "grpo", Config, required_fields, problems, train, trains_lora, memory_profile,
    needs_reward=True,
)  # fmt: skip
