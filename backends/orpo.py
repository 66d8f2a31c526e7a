"""`orpo`: Odds Ratio Preference Optimization (trl's `trl.experimental.orpo`) on
prompt/chosen/rejected pairs.

One loss, no reference model: the chosen answer's negative log-likelihood plus `beta` times the
log-sigmoid of the log odds ratio of chosen over rejected (Hong et al. 2024). A LoRA adapter by
default; `adapter: full` trains all weights.

trl's ORPO truncates only the answer, never the prompt: a pair whose prompt alone fills
`max_length` is left out (as trl's DPOTrainer does), counted in the candidate's record.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from pydantic import Field

from harness.backends import MemoryProfile, TrainRequest, TrainResult
from harness.backends.acceleration import Acceleration, acceleration_problems
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
from harness.core.errors import HarnessError

# What trl logs of ORPO's two terms, kept in the candidate's record (training.method).
LOGGED = ("nll_loss", "log_odds_ratio", "log_odds_chosen", "rewards/accuracies")
IGNORED_LABEL = -100  # trl's label for prompt and padding tokens


class Config(TrainingArgs, QuantizableAdapterArgs):
    learning_rate: float = Field(5e-5, gt=0)
    beta: float = Field(
        0.1,
        gt=0,
        description="Weight of the odds-ratio term against the chosen answer's NLL (λ in the paper)",
    )
    # No None: trl's ORPO would then truncate at 512 tokens all the same.
    max_length: int = Field(
        512,
        ge=1,
        description="Truncate prompt+answer tokens (the answer); a pair whose prompt alone fills "
        "it is left out",
    )


def required_fields(config: Config) -> set[str]:
    return {"prompt", "chosen", "rejected"}


def problems(config: Config) -> list[str]:
    return adapter_problems(config, reference=False) + acceleration_problems(config)


def orpo_model_kwargs(config: Config, plan: Acceleration) -> dict[str, Any]:
    """How ORPO loads the base: trl's experimental trainer takes no `quantization_config`
    argument, so 4-bit goes through `from_pretrained`; and it defaults to device_map="auto",
    which would split the model over every visible GPU (one process per GPU under accelerate
    launch): None lets the Trainer place it (bitsandbytes puts a 4-bit base on this GPU)."""
    kwargs = {**model_init_kwargs(plan), "device_map": None}
    if config.quantization == "4bit":
        kwargs["quantization_config"] = quantization_config(plan)
    return kwargs


def experimental_orpo() -> Any:
    """`trl.experimental.orpo`, imported without trl's "unstable API" warning: harness reads the
    trl it runs on, and a suite author can do nothing about it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="You are importing from 'trl.experimental'")
        from trl.experimental import orpo
    return orpo


def has_answer_tokens(row: Mapping[str, Any]) -> bool:
    """Whether trl's tokenized pair keeps an answer token in both sequences. trl truncates only
    the answer, so a prompt of `max_length` tokens leaves it empty; ORPO's loss then takes the
    answer's mean log-probability over no tokens (0/0, NaN in trl's `get_batch_logps`) and the
    whole batch's loss is NaN. Labels are shifted by one there: the first predicts nothing."""
    return all(
        any(label != IGNORED_LABEL for label in row[f"{answer}_labels"][1:])
        for answer in ("chosen", "rejected")
    )


def counting_trainer() -> type:
    """ORPOTrainer that leaves out the pairs that trl's truncation leaves no answer token (in
    `left_out`), and logs `num_tokens` (the tokens of chosen and rejected sequences trained on,
    padding excluded) as trl's other trainers do, for the harness's tokens/s."""

    class CountingORPOTrainer(experimental_orpo().ORPOTrainer):  # type: ignore[misc]
        trained_tokens = 0
        train_dataset: Any  # a `datasets.Dataset`, tokenized by trl's __init__

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            tokenized = self.train_dataset
            self.train_dataset = tokenized.filter(
                has_answer_tokens, num_proc=self.args.dataset_num_proc
            )
            self.left_out = len(tokenized) - len(self.train_dataset)

        def compute_loss(self, model: Any, inputs: dict[str, Any], *args: Any, **kw: Any) -> Any:
            if model.training:
                masks = (
                    inputs["chosen_attention_mask"].sum() + inputs["rejected_attention_mask"].sum()
                )
                self.trained_tokens += int(self.accelerator.gather_for_metrics(masks).sum())
            return super().compute_loss(model, inputs, *args, **kw)

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            if "loss" in logs:
                logs["num_tokens"] = float(self.trained_tokens)
            super().log(logs, start_time)

    return CountingORPOTrainer


def train(request: TrainRequest) -> TrainResult:
    config: Config = request.config
    device = pick_device()
    plan = plan_acceleration(config, request, device)
    tokenizer = load_tokenizer(request.base_dir)
    dataset = prompt_dataset(request, tokenizer, ["chosen", "rejected"])
    args = experimental_orpo().ORPOConfig(
        **trainer_arguments(config, request, device, plan),
        model_init_kwargs=orpo_model_kwargs(config, plan),
        beta=config.beta,
        max_length=config.max_length,
    )
    lora = trains_lora(config)

    def make_trainer(callbacks: list[Any]) -> Any:
        trainer = counting_trainer()(
            model=str(request.base_dir),
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=callbacks,
            peft_config=lora_config(config) if lora else None,
        )
        if len(trainer.train_dataset) == 0:
            raise HarnessError(
                f"every pair's prompt fills max_length ({config.max_length} tokens), leaving no "
                "answer to train on: raise max_length or shorten the prompts"
            )
        return trainer

    return train_with(make_trainer, request, plan, lambda t: training_details(t, config))


def training_details(trainer: Any, config: Config) -> dict[str, Any]:
    """Pairs trained on and left out, beta, and trl's last logged ORPO terms (training.method)."""
    return {
        "pairs": len(trainer.train_dataset),
        "pairs_whose_prompt_fills_max_length": trainer.left_out,
        "beta": config.beta,
        **last_logged(trainer, LOGGED),
    }


def memory_profile(config: Config) -> MemoryProfile:
    """Chosen and rejected are two sequences per row, in one forward; no reference model. trl's
    experimental ORPO takes the model's full logits (no fused LM head)."""
    adapter = adapter_shape(config) if trains_lora(config) else None
    return MemoryProfile(
        adapter=adapter,
        quantized=config.quantization == "4bit",
        answer_fields=("chosen", "rejected"),
        full_logits=True,
    )


BACKEND = TrainerBackend(
    "orpo", Config, required_fields, problems, train, trains_lora, memory_profile
)
