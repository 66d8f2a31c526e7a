"""`reward_model`: a reward model (trl RewardTrainer) trained on prompt/chosen/rejected pairs.

The base becomes a sequence classifier with one output (`AutoModelForSequenceClassification`,
`num_labels=1`: a decoder gets a fresh `score` head on its last token) trained with the pairwise
loss -log sigmoid(r(prompt+chosen) - r(prompt+rejected)). A LoRA adapter by default: peft's
SEQ_CLS task, the `score` head trained in full beside it (`modules_to_save`); `adapter: full`
trains all weights. Either way the result loads with `harness.models.loading.load_model` as a
classification model (an adapter keeps its head's shape beside it, `classifier_head.json`).

What the model saw in training is written beside it (`reward_format.json`), so that
`reward_scorer` scores other text exactly so: `prompt + completion + eos` tokenized plainly, or
with the suite's chat template the conversation [system, user prompt, assistant completion]
rendered by the tokenizer (what RewardTrainer does with explicit-prompt rows).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from harness.backends import CheckpointHook, MemoryProfile, TrainRequest, TrainResult
from harness.backends.acceleration import acceleration_problems
from harness.backends.common import (
    AdapterArgs,
    TrainerBackend,
    TrainingArgs,
    adapter_problems,
    adapter_shape,
    load_tokenizer,
    lora_config,
    model_init_kwargs,
    plan_acceleration,
    prompt_dataset,
    train_with,
    trainer_arguments,
    trains_lora,
    uses_chat,
)
from harness.core.device import pick_device
from harness.core.errors import HarnessError
from harness.models.loading import load_model
from harness.models.rewards import reward_scores, reward_token_ids
from harness.models.tasks import CLASSIFICATION, HEAD_CONFIG

SCORING_BATCH = 32  # token rows the scorer runs through the model at once
PAIR_FIELDS = frozenset({"prompt", "chosen", "rejected"})
FORMAT_FILE = "reward_format.json"
# What an adapter's base is loaded with before the adapter's head goes on (trl's own setting).
REWARD_HEAD = {"num_labels": 1}


class Config(TrainingArgs, AdapterArgs):
    learning_rate: float = Field(1e-4, gt=0)
    max_length: int | None = Field(
        512,
        ge=1,
        description="Pairs whose prompt+chosen or prompt+rejected is longer (in tokens) are left "
        "out of training (trl filters them); the count is recorded",
    )
    center_rewards_coefficient: float | None = Field(
        None, ge=0, description="Pull rewards towards mean zero (trl; 0.01 is the paper's value)"
    )

    @property
    def task(self) -> str:
        """A classifier: the acceleration plan keeps its weights in float32 (the head trains
        in full beside an adapter), as it does for `task: classification`."""
        return CLASSIFICATION


def required_fields(config: Config) -> set[str]:
    return set(PAIR_FIELDS)


def problems(config: Config) -> list[str]:
    return adapter_problems(config, reference=False) + acceleration_problems(config)


# ---- what the reward model saw ---------------------------------------------------------------


@dataclass(frozen=True)
class RewardFormat:
    """How prompt and completion became one text in training (the suite's chat settings)."""

    chat_template: bool = False
    system_prompt: str | None = None

    def write(self, model_dir: Path) -> None:
        text = json.dumps(dataclasses.asdict(self), indent=2)
        (model_dir / FORMAT_FILE).write_text(text, encoding="utf-8")

    @classmethod
    def read(cls, model_dir: Path) -> RewardFormat:
        """The saved format; plain text for a reward model saved without one."""
        path = model_dir / FORMAT_FILE
        if not path.is_file():
            return cls()
        saved = json.loads(path.read_text(encoding="utf-8"))
        return cls(bool(saved.get("chat_template")), saved.get("system_prompt"))

    def token_ids(self, tokenizer: Any, prompt: str, completion: str) -> list[int]:
        """RewardTrainer's tokenization of an explicit-prompt row (trl 1.16 `_prepare_dataset`):
        plain text gets the eos appended, a conversation is rendered by the chat template."""
        return reward_token_ids(
            tokenizer, prompt, completion, self.chat_template, self.system_prompt
        )


def extra_files_writer(request: TrainRequest) -> Callable[[Path], None]:
    """What a saved reward model needs beside its weights: its format, and for an adapter the
    head its base is loaded with."""
    config: Config = request.config
    tokenizer = load_tokenizer(request.base_dir)
    chat = uses_chat(request, tokenizer)
    saved_format = RewardFormat(chat, request.system_prompt if chat else None)

    def write(model_dir: Path) -> None:
        saved_format.write(model_dir)
        if trains_lora(config):
            (model_dir / HEAD_CONFIG).write_text(json.dumps(REWARD_HEAD), encoding="utf-8")

    return write


def with_extra_files(
    hook: CheckpointHook | None, write: Callable[[Path], None]
) -> CheckpointHook | None:
    """Checkpoints saved complete too: the run may keep a checkpoint as the final model."""
    if hook is None:
        return None
    evaluate = hook.evaluate

    def evaluate_with_files(checkpoint: Any) -> bool:
        save = checkpoint.save

        def save_all(out_dir: Path) -> None:
            save(out_dir)
            write(out_dir)

        return evaluate(dataclasses.replace(checkpoint, save=save_all))

    return CheckpointHook(hook.every, evaluate_with_files)


# ---- training --------------------------------------------------------------------------------


def train(request: TrainRequest) -> TrainResult:
    from trl import RewardConfig, RewardTrainer

    config: Config = request.config
    write_extra_files = extra_files_writer(request)
    request = dataclasses.replace(
        request, checkpoints=with_extra_files(request.checkpoints, write_extra_files)
    )
    device = pick_device()
    plan = plan_acceleration(config, request, device)
    tokenizer = load_tokenizer(request.base_dir)
    dataset = prompt_dataset(request, tokenizer, ["chosen", "rejected"])
    args = RewardConfig(
        **trainer_arguments(config, request, device, plan),
        model_init_kwargs=model_init_kwargs(plan),
        max_length=config.max_length,
        center_rewards_coefficient=config.center_rewards_coefficient,
    )

    def make_trainer(callbacks: list[Any]) -> Any:
        trainer = RewardTrainer(
            model=str(request.base_dir),  # loaded with num_labels=1 and a seeded new head
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=callbacks,
            peft_config=lora_config(config, task_type="SEQ_CLS") if trains_lora(config) else None,
        )
        prepared: Any = trainer.train_dataset  # a Dataset: trl filtered it by max_length
        if len(prepared) == 0:
            raise HarnessError(
                f"every pair is longer than max_length ({config.max_length} tokens): nothing to "
                "train on; raise max_length"
            )
        return trainer

    result = train_with(
        make_trainer, request, plan, lambda t: training_details(t, len(request.rows))
    )
    write_extra_files(result.model_dir)
    return result


def training_details(trainer: Any, rows: int) -> dict[str, Any]:
    """Pairs trained on and left out, and the last logged pairwise accuracy and margin on the
    training batches (trl's metrics), as training.method."""
    kept = len(trainer.train_dataset)
    details: dict[str, Any] = {"pairs": kept, "pairs_longer_than_max_length": rows - kept}
    logged = [entry for entry in trainer.state.log_history if "accuracy" in entry]
    if logged:
        details["train_accuracy"] = float(logged[-1]["accuracy"])
        details["train_margin"] = float(logged[-1]["margin"])
    return details


def memory_profile(config: Config) -> MemoryProfile:
    """Chosen and rejected are two sequences per row, in one forward; no reference model. The
    planner counts the causal LM's vocabulary head, which this classifier replaces by a
    one-output `score`: an overestimate by that head's logits and (full training) gradient."""
    return MemoryProfile(
        adapter=adapter_shape(config) if trains_lora(config) else None,
        answer_fields=("chosen", "rejected"),
    )


# ---- scoring with the trained model ----------------------------------------------------------


def reward_scorer(model_dir: Path) -> Callable[[list[str], list[str]], list[float]]:
    """Load the reward model at `model_dir` (an adapter or a full model) once; the function
    returned gives each (prompt, completion) its reward, formatted as in training, in batches."""
    loaded = load_model(str(model_dir))
    model = loaded.model
    outputs = getattr(model.config, "num_labels", None)
    if loaded.task != CLASSIFICATION or outputs != 1:
        raise HarnessError(
            f"{model_dir} is not a reward model (a classifier with one output): it loads as "
            f"{type(model).__name__} with {outputs} output(s)"
        )
    saved_format = RewardFormat.read(model_dir)

    def score(prompts: list[str], completions: list[str]) -> list[float]:
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        rows = [
            saved_format.token_ids(loaded.tokenizer, prompt, completion)
            for prompt, completion in zip(prompts, completions, strict=True)
        ]
        return reward_scores(model, rows, SCORING_BATCH)

    return score


BACKEND = TrainerBackend(
    "reward_model", Config, required_fields, problems, train, trains_lora, memory_profile,
    trains_reward_model=True, reward_scorer=reward_scorer,
)  # fmt: skip
