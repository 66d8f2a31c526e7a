"""Training a sequence-classification head (`task: classification` on the full and lora backends).

trl has no classification trainer, so this is transformers' `Trainer` on
`AutoModelForSequenceClassification` (an encoder such as BERT, or a decoder with a `score` head),
with the same progress callback, NaN detection, parameter counts and saving as the SFT backends.
Rows are `text` (+ optional `text_pair`) and `label`: a label id, or a name from `labels:`;
`num_labels: 1` trains a regression head on numeric labels (STS-B).

Heavy imports (torch, transformers, peft, datasets) wait inside functions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from harness.backends import TrainRequest, TrainResult
from harness.backends.acceleration import Acceleration
from harness.backends.common import (
    SFT_FIELDS,
    LoraArgs,
    SFTArgs,
    load_tokenizer,
    lora_config,
    plan_acceleration,
    train_with,
    trainer_arguments,
)
from harness.core.device import pick_device
from harness.core.errors import HarnessError
from harness.core.strict import Strict
from harness.models.tasks import HEAD_CONFIG

Task = Literal["causal_lm", "classification"]
CLASSIFICATION_FIELDS = frozenset({"text", "label"})


class TaskArgs(Strict):
    """What the full and lora backends train: a causal LM (SFT) or a classification head."""

    task: Task = Field(
        "causal_lm",
        description="causal_lm: SFT on prompt/completion rows; classification: a "
        "sequence-classification head on text (+ text_pair) / label rows",
    )
    num_labels: int | None = Field(
        None,
        ge=1,
        description="Classes of the head (default: from labels or the data; 1: regression)",
    )
    labels: list[str] | None = Field(
        None, description="Label names by id: rows may then give a label by name"
    )


def required_fields(config: TaskArgs) -> set[str]:
    """Training row fields the task needs."""
    return set(CLASSIFICATION_FIELDS if config.task == "classification" else SFT_FIELDS)


def task_problems(config: TaskArgs) -> list[str]:
    """Combinations of the task fields that cannot train, in words."""
    if config.task != "classification":
        given = [name for name in ("num_labels", "labels") if getattr(config, name) is not None]
        return [f"{name} applies only to task: classification" for name in given]
    problems = []
    # completion_only_loss has a default, so only an explicit setting is a contradiction.
    if "completion_only_loss" in config.model_fields_set:
        problems.append(
            "completion_only_loss applies to SFT; a classification head has no completion"
        )
    problems += label_problems(config)
    return problems


def label_problems(config: TaskArgs) -> list[str]:
    names = config.labels
    if names is None:
        return []
    if len(names) < 2:
        return [f"labels: a classifier needs 2 or more label names, got {names}"]
    if len(set(names)) != len(names):
        return [f"labels: each name once, got {names}"]
    if config.num_labels is not None and config.num_labels != len(names):
        return [f"num_labels is {config.num_labels} but labels names {len(names)}: {names}"]
    return []


# ---- labels ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelSpace:
    """The head's outputs: label names by id (one output, no names, for regression)."""

    names: tuple[str, ...]
    regression: bool

    @property
    def head(self) -> dict[str, Any]:
        """Config keys for from_pretrained: the head's size and label names."""
        id2label = {i: name for i, name in enumerate(self.names)}
        return {
            "id2label": id2label,
            "label2id": {name: i for i, name in id2label.items()},
            "problem_type": "regression" if self.regression else "single_label_classification",
        }


def label_space(rows: Sequence[dict[str, Any]], config: Any) -> LabelSpace:
    """From `labels:`, `num_labels:`, else the largest label id in the data (at least 2)."""
    if config.num_labels == 1:
        return LabelSpace(("score",), regression=True)
    if config.labels is not None:
        return LabelSpace(tuple(config.labels), regression=False)
    count = config.num_labels or max(2, 1 + max(label_id(row["label"], None) for row in rows))
    return LabelSpace(tuple(f"LABEL_{i}" for i in range(count)), regression=False)


def label_id(raw: Any, names: Sequence[str] | None) -> int:
    """A row's label as an id: a name from `labels:`, an int, or an integer string."""
    text = str(raw).strip()
    if names is not None and text in names:
        return list(names).index(text)
    if isinstance(raw, bool) or not text.lstrip("-").isdigit():
        known = f"one of {list(names)} or " if names else ""
        raise HarnessError(f"label {raw!r} is not {known}a label id (0, 1, ...)")
    return int(text)


def encode_label(raw: Any, space: LabelSpace) -> float | int:
    if space.regression:
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise HarnessError(
                f"label {raw!r} is not a number (num_labels: 1 is regression)"
            ) from None
    index = label_id(raw, space.names)
    if not 0 <= index < len(space.names):
        raise HarnessError(
            f"label {raw!r} is out of range for {len(space.names)} labels (0-{len(space.names) - 1})"
        )
    return index


# ---- training --------------------------------------------------------------------------------


def train_classifier(request: TrainRequest, config: Any, lora: LoraArgs | None) -> TrainResult:
    """Train a classification head (all weights, or a LoRA adapter plus the head) and save it
    loadable by `harness.models.loading` (an adapter also keeps its head's shape beside it)."""
    space = label_space(request.rows, config)
    labels = [encode_label(row["label"], space) for row in request.rows]
    plan = plan_acceleration(config, request, pick_device())

    def make_trainer(callbacks: list[Any]) -> Any:
        return classifier_trainer(request, config, lora, space, labels, callbacks, plan)

    result = train_with(make_trainer, request, plan)
    if result.is_adapter:
        head = json.dumps(space.head, indent=2)
        (request.output_dir / HEAD_CONFIG).write_text(head, encoding="utf-8")
    return result


def classifier_trainer(
    request: TrainRequest,
    config: SFTArgs,
    lora: LoraArgs | None,
    space: LabelSpace,
    labels: list[float | int],
    callbacks: Sequence[Any],
    acceleration: Acceleration,
) -> Any:
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed

    tokenizer = load_tokenizer(request.base_dir)
    set_seed(request.seed)  # a fresh head is initialised now: the same seed, the same head
    model = classifier_model(request, space, tokenizer, lora, acceleration)
    arguments = trainer_arguments(config, request, pick_device(), acceleration)
    return Trainer(
        model=model,
        # transformers counts tokens only when asked; padding is not training data
        args=TrainingArguments(**arguments, include_num_input_tokens_seen="non_padding"),
        train_dataset=classification_dataset(request.rows, labels, tokenizer, config.max_length),
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        callbacks=list(callbacks),
    )


def classifier_model(
    request: TrainRequest,
    space: LabelSpace,
    tokenizer: Any,
    lora: LoraArgs | None,
    acceleration: Acceleration,
) -> Any:
    """The base with a head of `space`'s size (a head of another size is replaced), in float32
    (the head trains in full, so the plan never puts a classifier's weights in bf16)."""
    from transformers import AutoModelForSequenceClassification

    attention = acceleration.attn_implementation
    model = AutoModelForSequenceClassification.from_pretrained(
        str(request.base_dir),
        dtype=acceleration.weights,
        **({"attn_implementation": attention} if attention else {}),
        **space.head,
        ignore_mismatched_sizes=True,
    )
    if model.config.pad_token_id is None:  # a decoder's head finds the last token by the pad id
        model.config.pad_token_id = tokenizer.pad_token_id
    if lora is None:
        return model
    from peft import get_peft_model

    if acceleration.gradient_checkpointing:  # frozen embeddings: checkpointed blocks get no grad
        model.enable_input_require_grads()
    return get_peft_model(model, lora_config(lora, task_type="SEQ_CLS"))


def classification_dataset(
    rows: Sequence[dict[str, Any]],
    labels: list[float | int],
    tokenizer: Any,
    max_length: int | None,
) -> Any:
    """Tokenized rows (padding is left to the collator, per batch) with their `labels`."""
    from datasets import Dataset

    records = []
    for row, label in zip(rows, labels, strict=True):
        pair = row.get("text_pair")
        encoded = tokenizer(
            str(row["text"]),
            None if pair is None else str(pair),
            truncation=True,
            max_length=max_length,
        )
        records.append({**encoded, "labels": label})
    return Dataset.from_list(records)
