"""`pretrain`: continued pre-training on plain text rows (`text`), the loss on every token.

trl's SFTTrainer on a language-modelling data set (one "text" column): trl then makes no
completion mask, so every token of a text (and the end-of-sequence token trl appends) is a label;
only padding is not. All weights train by default; `adapter: lora` trains a LoRA adapter instead.
Texts are trained as written: the suite's chat template is for prompts, never applied here.
Without packing a text longer than `max_length` is truncated; with `packing: true` texts are
packed into bins of `max_length` tokens by trl's best-fit decreasing, and a longer text is split
across bins (`bfd_split`) rather than cut, as pre-training wants.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field

from harness.backends import DataProblem, MemoryProfile, TrainRequest, TrainResult
from harness.backends.acceleration import Acceleration, BatchingArgs, acceleration_problems
from harness.backends.common import (
    AdapterArgs,
    TrainerBackend,
    TrainingArgs,
    adapter_problems,
    adapter_shape,
    build_sft_trainer,
    load_tokenizer,
    lora_config,
    model_init_kwargs,
    plan_acceleration,
    train_with,
    trainer_arguments,
    trains_lora,
)
from harness.core.device import pick_device

TEXT_FIELD = "text"
LORA_FIELDS = ("r", "lora_alpha", "lora_dropout", "target_modules", "use_dora")


class Config(TrainingArgs, BatchingArgs, AdapterArgs):
    learning_rate: float = Field(2e-5, gt=0)
    adapter: Literal["full", "lora"] = Field(
        "full", description="full: every weight trains; lora: a LoRA adapter (r, lora_alpha, ...)"
    )
    max_length: int | None = Field(
        512,
        ge=1,
        description="Tokens of a text (longer ones are truncated); with packing, of a packed "
        "bin (longer texts are split across bins)",
    )


def required_fields(config: Config) -> set[str]:
    return {TEXT_FIELD}


def data_problems(config: Config, rows: Sequence[dict[str, Any]]) -> list[DataProblem]:
    """A text is a non-empty string (a number or a list would be trained as its repr)."""
    return [
        DataProblem(f"`{TEXT_FIELD}` must be a non-empty string, got {row[TEXT_FIELD]!r}", i)
        for i, row in enumerate(rows)
        if not isinstance(row[TEXT_FIELD], str) or not row[TEXT_FIELD].strip()
    ]


def problems(config: Config) -> list[str]:
    if trains_lora(config):
        return adapter_problems(config, reference=False) + acceleration_problems(config)
    given = [name for name in LORA_FIELDS if name in config.model_fields_set]
    found = [
        f"{name} applies to adapter: lora (this candidate trains all weights)" for name in given
    ]
    return found + acceleration_problems(config)


def train(request: TrainRequest) -> TrainResult:
    config: Config = request.config
    plan = plan_acceleration(config, request, pick_device())

    def make_trainer(callbacks: list[Any]) -> Any:
        return pretrain_trainer(request, callbacks, plan)

    return train_with(make_trainer, request, plan)


def pretrain_trainer(
    request: TrainRequest,
    callbacks: Sequence[Any] = (),
    acceleration: Acceleration | None = None,
) -> Any:
    """An SFTTrainer on the rows' texts as a language-modelling data set (no completion mask)."""
    from datasets import Dataset
    from trl import SFTConfig

    config: Config = request.config
    device = pick_device()
    plan = acceleration or plan_acceleration(config, request, device)
    tokenizer = load_tokenizer(request.base_dir)
    dataset = Dataset.from_list([{TEXT_FIELD: str(row[TEXT_FIELD])} for row in request.rows])
    args = SFTConfig(
        **trainer_arguments(config, request, device, plan),
        model_init_kwargs=model_init_kwargs(plan),
        max_length=config.max_length,
        dataset_text_field=TEXT_FIELD,
        completion_only_loss=False,  # a text has no prompt: every token is a label
        packing=plan.packing,
        packing_strategy="bfd_split",  # a long text is split across bins, not truncated
    )
    peft_config = lora_config(config) if trains_lora(config) else None
    return build_sft_trainer(
        request, args, dataset, tokenizer, plan, callbacks, peft_config=peft_config
    )


def memory_profile(config: Config) -> MemoryProfile:
    """One sequence per row, the text itself (no prompt), all of it scored."""
    adapter = adapter_shape(config) if trains_lora(config) else None
    return MemoryProfile(adapter=adapter, answer_fields=(TEXT_FIELD,))


BACKEND = TrainerBackend(
    "pretrain",
    Config,
    required_fields,
    problems,
    train,
    trains_lora,
    memory_profile,
    data_problems=data_problems,
)
