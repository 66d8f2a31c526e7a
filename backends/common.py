"""Shared Hugging Face set-up for the trainer backends, as plain functions (no base class).

Config pieces (`TrainingArgs`, `SFTArgs`, `LoraArgs`) are pydantic models that each backend's
`Config` combines. Everything heavy (torch, transformers, trl, peft, datasets) is imported inside
functions so that `harness validate` can import the backends cheaply.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import math
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field, model_validator

from harness.backends import (
    AdapterShape,
    Checkpoint,
    CheckpointHook,
    DataProblem,
    MemoryProfile,
    TrainProgress,
    TrainRequest,
    TrainResult,
)
from harness.backends.acceleration import (
    Acceleration,
    AccelerationArgs,
    BatchingArgs,
    Device,
    acceleration_plan,
    base_model_type,
    installed_libraries,
)
from harness.core.chat import chat_turns
from harness.core.device import pick_device
from harness.core.strict import Strict
from harness.models.tasks import CLASSIFICATION, adapter_task, head_config

if TYPE_CHECKING:
    from transformers import TrainerCallback


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite: the candidate is recorded as a run error."""


# ---- config pieces ---------------------------------------------------------------------------

SchedulerName = Literal[
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
]


class TrainingArgs(AccelerationArgs):
    """Optimiser and schedule settings every backend takes (and, from `AccelerationArgs`,
    precision, attention, liger and gradient_checkpointing)."""

    learning_rate: float = Field(2e-5, gt=0)
    max_steps: int | None = Field(100, ge=1, description="Optimizer steps (default 100)")
    num_train_epochs: float | None = Field(
        None, gt=0, description="Train for this many epochs instead of max_steps"
    )
    per_device_train_batch_size: int = Field(8, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    lr_scheduler_type: SchedulerName = "linear"
    max_grad_norm: float = Field(1.0, ge=0)

    @model_validator(mode="after")
    def _one_length(self) -> TrainingArgs:
        # max_steps has a default, so only an explicit max_steps conflicts with epochs.
        explicit_steps = "max_steps" in self.model_fields_set and self.max_steps is not None
        if self.num_train_epochs is not None and explicit_steps:
            raise ValueError("give max_steps or num_train_epochs, not both")
        if self.num_train_epochs is None and self.max_steps is None:
            raise ValueError("give max_steps or num_train_epochs")
        return self


class SFTArgs(TrainingArgs, BatchingArgs):
    """Supervised fine-tuning on prompt/completion rows (padding_free and packing from
    `BatchingArgs`)."""

    max_length: int | None = Field(512, ge=1, description="Truncate prompt+completion tokens")
    completion_only_loss: bool = Field(
        True, description="Loss on completion tokens only (false: on the prompt too)"
    )


class LoraArgs(Strict):
    """A peft LoRA adapter."""

    r: int = Field(8, ge=1)
    lora_alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: str | list[str] = Field(
        "all-linear", description='"all-linear" or a list of module names'
    )
    use_dora: bool = False
    use_rslora: bool = Field(
        False, description="Rank-stabilised scaling: lora_alpha / sqrt(r) instead of lora_alpha / r"
    )
    init_lora_weights: str = Field(
        "default",
        pattern=r"^(default|gaussian|pissa|pissa_niter_[1-9][0-9]*|olora)$",
        description="default (B = 0), gaussian, pissa, pissa_niter_K (fast SVD, K iterations) "
        "or olora; pissa and olora start from the base's principal directions",
    )


# PiSSA and OLoRA take their start from the base's weights and leave the residual in its place:
# the base the trainer holds is no longer the original (see `save_weights`).
BASE_CHANGING_INITS = ("pissa", "olora")

Quantization = Literal["4bit"]
FULL_4BIT = "4-bit base weights cannot be trained in full; use the qlora backend or adapter: lora"


class AdapterArgs(LoraArgs):
    """A LoRA adapter (the LoraArgs) by default; `adapter: full` trains all weights instead."""

    adapter: Literal["lora", "full"] = "lora"


class QuantizableAdapterArgs(AdapterArgs):
    """An adapter choice whose base may be loaded in 4 bits (QLoRA-style under an adapter)."""

    quantization: Quantization | None = Field(None, description='"4bit": QLoRA-style base')


def trains_lora(config: AdapterArgs) -> bool:
    return config.adapter == "lora"


def adapter_problems(config: AdapterArgs, *, reference: bool) -> list[str]:
    """What the adapter choice cannot train: full weights in 4 bits, or `lora_problems`
    (`reference`: the method's reference is the base with the adapter switched off)."""
    quantized = isinstance(config, QuantizableAdapterArgs) and config.quantization == "4bit"
    found = [FULL_4BIT] if config.adapter == "full" and quantized else []
    return found + (lora_problems(config, reference=reference) if trains_lora(config) else [])


def changes_base(config: LoraArgs) -> bool:
    """Whether this adapter's initialisation rewrites the base's weights (PiSSA, OLoRA)."""
    return config.init_lora_weights.startswith(BASE_CHANGING_INITS)


def peft_init(config: LoraArgs) -> bool | str:
    """peft's `init_lora_weights` for the suite's name of it ("default" is peft's True)."""
    return True if config.init_lora_weights == "default" else config.init_lora_weights


def lora_problems(config: LoraArgs, *, reference: bool = False) -> list[str]:
    """trl computes log-probs from lm_head.weight directly, so an adapter there never trains.
    `reference`: the method's reference model is the base with the adapter switched off (DPO,
    KTO; GRPO and RLOO with beta > 0)."""
    modules = [config.target_modules] if isinstance(config.target_modules, str) else []
    modules += config.target_modules if isinstance(config.target_modules, list) else []
    found = []
    if "lm_head" in modules:
        found.append(
            "target_modules: an adapter on lm_head is never trained by trl; remove lm_head"
        )
    quantized = getattr(config, "quantization", None) == "4bit"  # dpo, grpo, ... on a 4-bit base
    found += init_problems(config, reference=reference)
    return found + (quantized_init_problems(config) if quantized else [])


def init_problems(config: LoraArgs, *, reference: bool = False) -> list[str]:
    """What PiSSA and OLoRA, which replace the base's weights by a residual, cannot train with."""
    if not changes_base(config):
        return []
    name = f"init_lora_weights: {config.init_lora_weights}"
    found = []
    if config.use_dora:
        found.append(
            f"{name} cannot be combined with use_dora: the adapter is saved as its change to the "
            "original base (peft's conversion), which peft computes for LoRA's A and B only"
        )
    if reference:
        found.append(
            f"{name} rewrites the base's weights into a residual, and this method's reference "
            "is the base with the adapter switched off: it would be the residual, not the base; "
            "use init_lora_weights: default or gaussian"
        )
    return found


def quantized_init_problems(config: LoraArgs) -> list[str]:
    """PiSSA and OLoRA on a 4-bit base (qlora, or `quantization: 4bit`)."""
    if not changes_base(config):
        return []
    return [
        f"init_lora_weights: {config.init_lora_weights} needs a full-precision base: peft "
        "cannot decompose 4-bit weights (PiSSA), and a re-quantised residual (OLoRA) no longer "
        "matches the adapter saved for the original base; use init_lora_weights: default or "
        "gaussian with a 4-bit base"
    ]


# ---- the backend object ----------------------------------------------------------------------


@dataclass
class TrainerBackend:
    """What `BACKENDS` holds: a name, the `args:` model and three plain functions."""

    name: str
    Config: type[BaseModel]
    required_fields: Callable[[Any], set[str]]
    problems: Callable[[Any], list[str]]
    train: Callable[[TrainRequest], TrainResult]
    trains_adapter: Callable[[Any], bool]
    memory_profile: Callable[[Any], MemoryProfile]
    needs_reward: bool = False  # GRPO: the suite must say what rewards a completion
    # Its model scores (prompt, completion) pairs: other candidates may use it as their reward
    # (`reward: {model: NAME}`): reward_scorer(model_dir)(prompts, completions) -> rewards
    trains_reward_model: bool = False
    reward_scorer: Callable[[Path], Callable[[list[str], list[str]], list[float]]] | None = None
    # Checks of the training rows' values (KTO: boolean labels, both kinds present), run at
    # validation time; None: `required_fields` says all
    data_problems: Callable[[Any, Sequence[dict[str, Any]]], list[DataProblem]] | None = None
    # Checks of the args against the base's config.json (its layers, its architecture), run at
    # validation time when that config can be read without loading the base; None: none
    base_problems: Callable[[Any, dict[str, Any]], list[str]] | None = None


def adapter_shape(config: Any) -> AdapterShape:
    """A LoraArgs config's adapter, as the planner sees it."""
    targets = config.target_modules
    return AdapterShape(
        config.r, targets if isinstance(targets, str) else tuple(targets), config.use_dora
    )


# ---- devices, arguments ----------------------------------------------------------------------


def plan_acceleration(config: TrainingArgs, request: TrainRequest, device: Device) -> Acceleration:
    """`acceleration_plan` for this candidate on this machine (its libraries, its base)."""
    return acceleration_plan(
        device, config, installed_libraries(), base_model_type(request.base_dir)
    )


def trainer_arguments(
    config: TrainingArgs,
    request: TrainRequest,
    device: Device,
    plan: Acceleration,
) -> dict[str, Any]:
    """Keyword arguments shared by SFTConfig, DPOConfig, GRPOConfig and TrainingArguments."""
    return {
        "output_dir": str(request.output_dir),
        "learning_rate": config.learning_rate,
        **length_arguments(config),
        "per_device_train_batch_size": config.per_device_train_batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "warmup_steps": config.warmup_ratio,  # transformers 5: a float < 1 is a ratio
        "weight_decay": config.weight_decay,
        "lr_scheduler_type": config.lr_scheduler_type,
        "max_grad_norm": config.max_grad_norm,
        # trl's configs default to checkpointing on and bf16 on: both decided here instead
        # (transformers 5 renamed gradient_checkpointing; the old name warns)
        "activation_checkpointing": plan.gradient_checkpointing,
        "bf16": plan.precision == "bf16",
        **liger_arguments(plan),
        "use_cpu": device.name == "cpu",
        "seed": request.seed,
        "data_seed": request.seed,
        "logging_steps": 1,  # every step, so the loss curve is complete
        "logging_nan_inf_filter": False,  # else a NaN loss is logged as the running mean
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
    }


def liger_arguments(acceleration: Acceleration) -> dict[str, Any]:
    """Liger's layer kernels (RMSNorm, RoPE, SwiGLU) through transformers' `use_liger_kernel`.
    Never its fused linear cross-entropy: trl has its own chunked LM head (and refuses Liger's),
    and on a classifier it would replace the forward with a causal LM's."""
    if not acceleration.liger:
        return {}
    return {
        "use_liger_kernel": True,
        "liger_kernel_config": {"fused_linear_cross_entropy": False, "cross_entropy": False},
    }


def length_arguments(config: TrainingArgs) -> dict[str, Any]:
    if config.num_train_epochs is not None:
        return {"max_steps": -1, "num_train_epochs": config.num_train_epochs}
    return {"max_steps": config.max_steps}


def model_init_kwargs(acceleration: Acceleration) -> dict[str, Any]:
    """How trl loads the base from its path: in the plan's weight dtype (float32 master weights
    when they train, bf16 for a frozen base under bf16 autocast) and attention kernel."""
    kwargs: dict[str, Any] = {"dtype": acceleration.weights}
    if acceleration.attn_implementation is not None:
        kwargs["attn_implementation"] = acceleration.attn_implementation
    return kwargs


def quantization_config(acceleration: Acceleration) -> Any:
    """NF4 with double quantisation; computes in bf16 under bf16 precision, else float32."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16
        if acceleration.precision == "bf16"
        else torch.float32,
    )


def lora_config(config: LoraArgs, task_type: str = "CAUSAL_LM") -> Any:
    """A peft LoraConfig; with task_type SEQ_CLS peft also trains (and saves) the classifier
    head in full (`modules_to_save`: the `classifier` or `score` module)."""
    from peft import LoraConfig

    return LoraConfig(
        r=config.r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.target_modules,
        use_dora=config.use_dora,
        use_rslora=config.use_rslora,
        init_lora_weights=peft_init(config),  # type: ignore[arg-type]  # pissa_niter_K too
        task_type=task_type,
    )


def load_tokenizer(base_dir: Path) -> Any:
    """The base's tokenizer, with pad = eos when it has no pad token."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


# ---- data ------------------------------------------------------------------------------------


def uses_chat(request: TrainRequest, tokenizer: Any) -> bool:
    """Conversational rows only when the suite asks and the base has a template to apply."""
    return request.chat_template and bool(getattr(tokenizer, "chat_template", None))


def user_turn(text: str, chat: bool, system_prompt: str | None = None) -> Any:
    """A prompt as evaluation sees it: a user turn after the suite's system prompt, if any."""
    return chat_turns(text, system_prompt) if chat else text


def assistant_turn(text: str, chat: bool) -> Any:
    return [{"role": "assistant", "content": text}] if chat else text


def build_dataset(
    rows: Sequence[dict[str, Any]],
    prompt_fields: Sequence[str],
    answer_fields: Sequence[str],
    chat: bool,
    system_prompt: str | None = None,
) -> Any:
    """A `datasets.Dataset` of the named fields as strings: prompts as user turns (after the
    system prompt) and answers as assistant turns when `chat`, plain text otherwise (trl's
    prompt-completion formats)."""
    from datasets import Dataset

    records = [
        {
            **{name: user_turn(str(row[name]), chat, system_prompt) for name in prompt_fields},
            **{name: assistant_turn(str(row[name]), chat) for name in answer_fields},
        }
        for row in rows
    ]
    return Dataset.from_list(records)


def prompt_dataset(request: TrainRequest, tokenizer: Any, answer_fields: Sequence[str]) -> Any:
    """`build_dataset` of the request's rows: their prompt and `answer_fields`, formatted as the
    suite's chat settings say for this tokenizer."""
    chat = uses_chat(request, tokenizer)
    return build_dataset(request.rows, ["prompt"], answer_fields, chat, request.system_prompt)


# ---- the training loop -----------------------------------------------------------------------


@dataclass
class LossLog:
    """What the callback collected: the loss curve and the token count trl logs."""

    curve: list[tuple[int, float]] = field(default_factory=list)
    tokens: int = 0


def progress_callback(progress: Callable[[TrainProgress], None], log: LossLog) -> TrainerCallback:
    """A trl/transformers callback that reports each logged step, collects the loss curve and
    stops a diverging run with an error that names the step."""
    from transformers import TrainerCallback

    class Progress(TrainerCallback):  # type: ignore[misc]
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            progress(TrainProgress(0, state.max_steps))

        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any
        ) -> None:
            logs = logs or {}
            # trl logs num_tokens; transformers' Trainer num_input_tokens_seen (when asked)
            tokens = logs.get("num_tokens", logs.get("num_input_tokens_seen"))
            if tokens is not None:
                log.tokens = int(tokens)
            if "loss" not in logs:
                return
            loss = float(logs["loss"])
            check_finite(loss, state.global_step, args.learning_rate)
            log.curve.append((state.global_step, loss))
            progress(TrainProgress(state.global_step, state.max_steps, loss))

    return Progress()


def checkpoint_callback(hook: CheckpointHook, base_dir: Path) -> TrainerCallback:
    """Hands the model to `hook` every `hook.every` steps and at the last step, in eval mode
    (no dropout), and stops the training when the hook says so."""
    from transformers import TrainerCallback

    class Checkpoints(TrainerCallback):  # type: ignore[misc]
        def on_step_end(
            self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any
        ) -> None:
            step, total = state.global_step, state.max_steps
            if step % hook.every and step < total:
                return
            tokenizer = kwargs.get("processing_class")

            def save(out_dir: Path) -> None:
                save_weights(model, tokenizer, out_dir, base_dir)

            with evaluation_mode(model):
                stop = hook.evaluate(Checkpoint(step, total, model, tokenizer, save))
            if stop and step < total:
                control.should_training_stop = True

    return Checkpoints()


@contextlib.contextmanager
def evaluation_mode(model: Any) -> Iterator[None]:
    """The model as evaluation sees it (dropout off), back in training mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def check_finite(loss: float, step: int, learning_rate: float) -> None:
    if not math.isfinite(loss):
        raise TrainingDiverged(
            f"training loss became {loss} at step {step} (learning_rate {learning_rate:g}); "
            "lower the learning rate or check the data"
        )


def run_trainer(trainer: Any) -> None:
    """Train quietly: no per-step printing, no progress bars (the harness shows progress)."""
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # disable_tqdm swaps tqdm for this printer
    trainer.train()


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence progress bars, library info/warnings and transformers-5 deprecation warnings
    (peft and trl still trigger them; nothing a suite author can fix) while training."""
    with warnings.catch_warnings(), library_loggers_at(logging.ERROR), no_progress_bars():
        warnings.simplefilter("ignore", FutureWarning)
        yield


@contextlib.contextmanager
def library_loggers_at(level: int) -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in ("transformers", "trl", "peft", "datasets")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(level)
    try:
        yield
    finally:
        for logger, previous in zip(loggers, levels, strict=True):
            logger.setLevel(previous)


@contextlib.contextmanager
def no_progress_bars() -> Iterator[None]:
    """datasets' map bars and transformers' loading/saving bars, restored afterwards."""
    from datasets.utils import logging as datasets_logging
    from transformers.utils import logging as transformers_logging

    modules = [m for m in (datasets_logging, transformers_logging) if m.is_progress_bar_enabled()]
    for module in modules:
        module.disable_progress_bar()
    try:
        yield
    finally:
        for module in modules:
            module.enable_progress_bar()


# ---- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParameterCount:
    trainable: int
    total: int


def count_parameters(model: Any) -> ParameterCount:
    """Trainable and total parameters; 4-bit weights count as their unpacked size."""
    trainable = total = 0
    for parameter in model.parameters():
        n = logical_numel(parameter)
        total += n
        trainable += n if parameter.requires_grad else 0
    return ParameterCount(trainable, total)


def logical_numel(parameter: Any) -> int:
    # bitsandbytes packs two 4-bit values per byte; its quant_state keeps the real shape.
    state = getattr(parameter, "quant_state", None)
    if state is not None and getattr(state, "shape", None) is not None:
        return int(math.prod(state.shape))
    return int(parameter.numel())


def save_result(trainer: Any, request: TrainRequest, log: LossLog) -> TrainResult:
    """Save the model (or adapter, naming the base by its path) and tokenizer; report."""
    from peft import PeftModel

    model = trainer.model
    counts = count_parameters(model)
    is_adapter = isinstance(model, PeftModel)
    request.output_dir.mkdir(parents=True, exist_ok=True)
    if trainer.accelerator.num_processes > 1:
        # Under `accelerate launch` (DDP, FSDP, DeepSpeed) the trainer gathers sharded weights
        # and writes once, from the main process; the others wait until it is on disk.
        trainer.save_model(str(request.output_dir))
        trainer.accelerator.wait_for_everyone()
    else:
        save_weights(model, trainer.processing_class, request.output_dir, request.base_dir)
    return TrainResult(
        model_dir=request.output_dir,
        is_adapter=is_adapter,
        trainable_parameters=counts.trainable,
        total_parameters=counts.total,
        train_tokens=log.tokens,
        final_loss=log.curve[-1][1] if log.curve else None,
        loss_curve=list(log.curve),
        device=str(model.device.type),
        acceleration=used_acceleration(trainer),
    )


def last_logged(trainer: Any, names: Sequence[str]) -> dict[str, float]:
    """The last training-step values trl logged under `names` (a method's own metrics, for
    `TrainResult.details`), rounded for the record; a name never logged is left out."""
    found: dict[str, float] = {}
    for entry in trainer.state.log_history:
        if "loss" in entry:
            found |= {name: round(float(entry[name]), 6) for name in names if name in entry}
    return found


def save_weights(model: Any, tokenizer: Any, out_dir: Path, base_dir: Path) -> None:
    """The model (or adapter, naming its base by path so load_model finds it) and tokenizer.

    A PiSSA/OLoRA adapter trained on the residual is saved as its change to the original base
    (peft's conversion: rank 2r, ΔW = AB - A0B0), so that it applies to the untouched base
    load_model loads; saved as it is, it would be added to weights it was not trained with."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        for adapter in model.peft_config.values():
            adapter.base_model_name_or_path = str(base_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    initial = getattr(model, INITIAL_ADAPTER, None)
    if initial is None:
        model.save_pretrained(str(out_dir))
    else:
        model.save_pretrained(str(out_dir), path_initial_model_for_weight_conversion=str(initial))
        keep_unconverted_tensors(model, out_dir)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out_dir))


# The attribute under which a PiSSA/OLoRA model in training carries the directory of its
# adapter as initialised, which `save_weights` converts against.
INITIAL_ADAPTER = "harness_initial_adapter"


def keep_initial_adapter(trainer: Any, directory: Path) -> None:
    """PiSSA/OLoRA (peft 0.21's procedure): save the adapter as initialised, before the first
    step, into `directory`, for every later `save_weights` to convert against."""
    from peft import PeftModel

    model = trainer.model
    if not isinstance(model, PeftModel):
        return
    init = str(getattr(model.active_peft_config, "init_lora_weights", ""))
    if not init.startswith(BASE_CHANGING_INITS):
        return
    if trainer.accelerator.num_processes > 1:
        raise RuntimeError(
            f"init_lora_weights: {init} cannot be saved from a multi-process launch (the "
            "conversion for the original base needs the whole adapter in one process); train "
            "it without `accelerate:`"
        )
    initial = directory / "initial_adapter"  # its name becomes peft's adapter name for it
    model.save_pretrained(str(initial))
    setattr(model, INITIAL_ADAPTER, initial)


def keep_unconverted_tensors(model: Any, out_dir: Path) -> None:
    """peft 0.21's conversion keeps only LoRA's A and B: put back what else the adapter saves
    (a classifier head in `modules_to_save`), unchanged, since it never depended on the base."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import load_file, save_file

    path = out_dir / "adapter_model.safetensors"
    converted = load_file(str(path))
    state = get_peft_model_state_dict(model)
    kept = {name: tensor for name, tensor in state.items() if "lora_" not in name}
    if kept:
        tensors = {name: t.detach().cpu().contiguous() for name, t in kept.items()}
        save_file({**converted, **tensors}, str(path), metadata={"format": "pt"})


def used_acceleration(trainer: Any) -> dict[str, Any]:
    """What the trainer really trains with, read back from it (the keys of
    `Acceleration.record`): a library that ignored a setting shows here, not the intention."""
    from peft import PeftModel

    model = trainer.model
    base: Any = model.get_base_model() if isinstance(model, PeftModel) else model
    args = trainer.args
    weights = base.get_input_embeddings().weight.dtype  # 4-bit bases keep embeddings unquantised
    return {
        "precision": "bf16" if args.bf16 else "fp32",
        "weights": str(weights).removeprefix("torch."),
        "attention": str(base.config._attn_implementation),
        "padding_free": bool(getattr(trainer.data_collator, "padding_free", False)),
        "packing": bool(getattr(args, "packing", False)),
        "liger": bool(args.use_liger_kernel),
        "gradient_checkpointing": bool(args.activation_checkpointing),
    }


def train_with(
    make_trainer: Callable[[list[Any]], Any],
    request: TrainRequest,
    acceleration: Acceleration,
    details: Callable[[Any], dict[str, Any]] | None = None,
) -> TrainResult:
    """Build a trainer with the progress callback, train it quietly, save and report;
    `details`: what only this method records, read from the trained trainer."""
    log = LossLog()
    model_type = base_model_type(request.base_dir) if acceleration.liger else None
    callbacks = [progress_callback(request.progress, log)]
    if request.checkpoints is not None:
        callbacks.append(checkpoint_callback(request.checkpoints, request.base_dir))
    with quiet(), kept_module_globals(model_type), tempfile.TemporaryDirectory() as scratch:
        trainer = make_trainer(callbacks)
        keep_initial_adapter(trainer, Path(scratch))  # PiSSA/OLoRA only
        run_trainer(trainer)
        result = save_result(trainer, request, log)
    return replace(result, details=details(trainer)) if details is not None else result


@contextlib.contextmanager
def kept_module_globals(model_type: str | None) -> Iterator[None]:
    """Undo, after training, what Liger patches for the whole process: it replaces the
    architecture module's RMSNorm, MLP and RoPE (`modeling_llama.LlamaRMSNorm = LigerRMSNorm`),
    so every model of that type loaded later (the evaluation of the base and the candidates)
    would otherwise run Liger's kernels instead of transformers' own."""
    module = modeling_module(model_type) if model_type else None
    saved = dict(vars(module)) if module is not None else {}
    try:
        yield
    finally:
        if module is not None:
            for name, value in saved.items():
                if getattr(module, name, None) is not value:
                    setattr(module, name, value)


def modeling_module(model_type: str) -> Any:
    """transformers.models.<type>.modeling_<type> (gemma3_text: gemma3's), None if none."""
    for name in (model_type, model_type.removesuffix("_text")):
        try:
            return importlib.import_module(f"transformers.models.{name}.modeling_{name}")
        except ImportError:
            continue
    return None


# ---- merging ---------------------------------------------------------------------------------


def merge_adapter(adapter_dir: Path, out_dir: Path) -> Path:
    """Merge a LoRA/QLoRA adapter into a float32 copy of its base; save a plain HF directory
    (model + tokenizer) at `out_dir` and return it. The base is the unquantised model the
    adapter names, so a QLoRA adapter merges into full-precision weights."""
    from peft import PeftModel

    config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    base_dir = config["base_model_name_or_path"]
    base = merge_base(base_dir, adapter_dir, config)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(str(out_dir))
    tokenizer_dir = adapter_dir if (adapter_dir / "tokenizer_config.json").is_file() else base_dir
    load_tokenizer(Path(tokenizer_dir)).save_pretrained(str(out_dir))
    return out_dir


def merge_base(base_dir: str, adapter_dir: Path, adapter_config: dict[str, Any]) -> Any:
    """The float32 base an adapter merges into: a causal LM, or for a SEQ_CLS adapter a
    classifier shaped like the adapter's head (which the merge then replaces by the trained one)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    if adapter_task(adapter_config) != CLASSIFICATION:
        return AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    head = head_config(adapter_dir)
    return AutoModelForSequenceClassification.from_pretrained(
        base_dir, dtype=torch.float32, **head, ignore_mismatched_sizes=bool(head)
    )


# ---- supervised fine-tuning (full, lora, qlora) ----------------------------------------------

SFT_FIELDS = frozenset({"prompt", "completion"})


def sft_trainer(
    request: TrainRequest,
    config: SFTArgs,
    lora: LoraArgs | None,
    quantize: bool,
    callbacks: Sequence[Any] = (),
    acceleration: Acceleration | None = None,
    peft_config: Any = None,
) -> Any:
    """An SFTTrainer on prompt/completion rows: all weights, or a LoRA adapter (on a 4-bit base
    when `quantize`), or the adapter of any ready `peft_config` (prompt tuning, IA3, ...; then
    `lora` is None). The model goes to trl as a path: trl refuses quantising a model object."""
    from trl import SFTConfig

    device = pick_device()
    plan = acceleration or plan_acceleration(config, request, device)
    tokenizer = load_tokenizer(request.base_dir)
    args = SFTConfig(
        **trainer_arguments(config, request, device, plan),
        model_init_kwargs=model_init_kwargs(plan),
        max_length=config.max_length,
        completion_only_loss=config.completion_only_loss,
        packing=plan.packing,  # trl's default strategy, bfd: packed bins are padding-free
    )
    return build_sft_trainer(
        request,
        args,
        prompt_dataset(request, tokenizer, ["completion"]),
        tokenizer,
        plan,
        callbacks,
        peft_config=lora_config(lora) if lora is not None else peft_config,
        quantization=quantization_config(plan) if quantize else None,
    )


def build_sft_trainer(
    request: TrainRequest,
    args: Any,
    dataset: Any,
    tokenizer: Any,
    plan: Acceleration,
    callbacks: Sequence[Any],
    *,
    peft_config: Any = None,
    quantization: Any = None,
) -> Any:
    """trl's SFTTrainer on the base's path, with `padding_free_collator` when the plan is
    padding-free without packing (packed bins are padding-free already)."""
    from trl import SFTTrainer

    unpacked_padding_free = plan.padding_free and not plan.packing
    trainer = SFTTrainer(
        model=str(request.base_dir),
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        data_collator=padding_free_collator(tokenizer) if unpacked_padding_free else None,
        callbacks=list(callbacks),
        peft_config=peft_config,
        quantization_config=quantization,
    )
    if unpacked_padding_free:
        share_pad_token(trainer.model, tokenizer)
    return trainer


def padding_free_collator(tokenizer: Any) -> Any:
    """trl's own collator, flattening each batch into one sequence with restarting
    position_ids. Passed as a collator rather than as `padding_free=True`: trl 1.16 then refuses
    any `max_length` without packing ("not enforced"), although its dataset preparation truncates
    every row to `max_length` all the same (tests/backends/test_acceleration.py checks that it does)."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=True)


def share_pad_token(model: Any, tokenizer: Any) -> None:
    """What trl does when it builds its own collator: the model's configs learn the pad id."""
    model.config.get_text_config().pad_token_id = tokenizer.pad_token_id
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id


def train_sft(
    request: TrainRequest, config: SFTArgs, lora: LoraArgs | None, quantize: bool
) -> TrainResult:
    """Supervised fine-tuning (the full, lora and qlora backends)."""
    plan = plan_acceleration(config, request, pick_device())

    def make_trainer(callbacks: list[Any]) -> Any:
        return sft_trainer(request, config, lora, quantize, callbacks, plan)

    return train_with(make_trainer, request, plan)
