"""`harness plan`'s work: read a suite, its base's config and token lengths, and estimate each
candidate's peak memory with the pure formulas of harness/planner.py. No weights are loaded.

The sequence lengths are measured, not assumed: trl pads each batch to its longest row, so the
peak comes from the longest rows of the data, tokenized by the base's tokenizer (capped at the
backend's `max_length`). Without a tokenizer (a hub id offline) the configured maximum is used.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.backends import BACKENDS, Backend, MemoryProfile
from harness.backends.acceleration import (
    OPTIONAL_LIBRARIES,
    Acceleration,
    AccelerationError,
    Device,
    acceleration_plan,
    config_model_type,
    installed_libraries,
)
from harness.core.chat import chat_turns
from harness.core.errors import HarnessError, ModelNotFoundError
from harness.models.configs import read_config as directory_config
from harness.models.presets import preset_config
from harness.models.references import check_reference, local_directory
from harness.models.tinylm import train_tokenizer
from harness.plan._estimate import (
    DTYPE_BYTES,
    FP32,
    Breakdown,
    EvaluationSetup,
    FrozenShape,
    LoraShape,
    ModelShape,
    Sharding,
    TrainingSetup,
    adapter_parameters,
    evaluation_breakdown,
    model_shape,
    sharded,
    training_breakdown,
)
from harness.suite import LoadedSuite

# What the process needs besides the estimate: Python + torch + trl resident on the CPU (about
# 0.7 GB RSS measured for the tiny suite), the CUDA context and cuBLAS workspace on a GPU.
RUNTIME_ALLOWANCE = {"cpu": 768 * 2**20, "cuda": 512 * 2**20}
FALLBACK_PROMPT_TOKENS = 512  # trl's prompt truncation default, when nothing can be tokenized


@dataclass(frozen=True)
class DeviceInfo:
    name: str  # "cpu" or "cuda"
    dtype: str  # evaluation weights; training compute (autocast) dtype
    available: float | None  # bytes free for the job, None when unknown
    description: str

    @property
    def allowance(self) -> int:
        return RUNTIME_ALLOWANCE[self.name]


@dataclass(frozen=True)
class PlanRow:
    """One model of the suite: its training peak (trained candidates) and its evaluation peak."""

    name: str
    backend: str | None
    evaluation: Breakdown
    training: Breakdown | None = None
    seq_len: int | None = None  # the training sequence length the estimate used
    notes: tuple[str, ...] = ()
    acceleration: dict[str, Any] | None = None  # what the backend will train with (its record)

    @property
    def peak(self) -> Breakdown:
        """The phase with the larger total (training, when there is one, in practice)."""
        if self.training is not None and self.training.total >= self.evaluation.total:
            return self.training
        return self.evaluation


@dataclass
class SuitePlan:
    suite: str
    base: str
    shape: ModelShape
    device: DeviceInfo
    rows: list[PlanRow] = field(default_factory=list)

    def fits(self, row: PlanRow) -> bool | None:
        if self.device.available is None:
            return None
        return row.peak.total + self.device.allowance <= self.device.available

    def as_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "base": self.base,
            "device": {
                "name": self.device.name,
                "dtype": self.device.dtype,
                "available_bytes": self.device.available,
                "runtime_allowance_bytes": self.device.allowance,
                "description": self.device.description,
            },
            "model": {**self.shape.__dict__},
            "rows": [self._row_dict(row) for row in self.rows],
        }

    def _row_dict(self, row: PlanRow) -> dict[str, Any]:
        return {
            "name": row.name,
            "backend": row.backend,
            "peak_bytes": row.peak.total,
            "fits": self.fits(row),
            "training": row.training.as_dict() if row.training else None,
            "evaluation": row.evaluation.as_dict(),
            "training_seq_len": row.seq_len,
            "acceleration": row.acceleration,
            "notes": list(row.notes),
        }


# ---- device ----------------------------------------------------------------------------------


def resolve_device(device: str | None) -> str:
    if device is not None:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def parse_size(text: str) -> float:
    """'24GiB', '80GB', '16g', '512MiB' -> bytes (GB and GiB both binary: what nvidia-smi shows)."""
    match = re.fullmatch(r"\s*([\d.]+)\s*([kmgt]?)(i?b)?\s*", text.lower())
    if not match:
        raise HarnessError(f"--memory {text!r}: give a size such as 24GiB, 80GB or 512MiB")
    scale = 1024 ** "bkmgt".index(match.group(2) or "b")
    return float(match.group(1)) * scale


def device_info(device: str, dtype: str | None, memory: str | None) -> DeviceInfo:
    """The device planned for, its default dtype (float32 on CPU, bfloat16 on a GPU, float16 on
    a visible GPU without bf16) and the memory free on it now (CUDA: `mem_get_info`; CPU:
    psutil's available memory)."""
    if device not in RUNTIME_ALLOWANCE:
        raise HarnessError(f"--device {device!r}: use cpu or cuda")
    dtype = dtype or ("float32" if device == "cpu" else default_gpu_dtype())
    if dtype not in DTYPE_BYTES:
        raise HarnessError(f"--dtype {dtype!r}: use one of {', '.join(DTYPE_BYTES)}")
    if memory is not None:
        return DeviceInfo(device, dtype, parse_size(memory), f"{memory} (--memory)")
    available, description = visible_memory(device)
    return DeviceInfo(device, dtype, available, description)


def default_gpu_dtype() -> str:
    """bfloat16, unless a visible GPU lacks it (a T4, a V100): float16 then."""
    import torch

    if torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        return "float16"
    return "bfloat16"


def training_device(info: DeviceInfo) -> Device:
    """The device as the backends see it: a GPU has bf16 when the plan's dtype is bfloat16
    (`--dtype float32` or `float16` on cuda: a GPU without it, so `precision: auto` is fp32)."""
    return Device(info.name, info.name == "cuda" and info.dtype == "bfloat16")


def visible_memory(device: str) -> tuple[float | None, str]:
    if device == "cpu":
        import psutil

        memory = psutil.virtual_memory()
        return float(memory.available), f"CPU RAM: {memory.available / 2**30:.1f} GiB available"
    import torch

    if not torch.cuda.is_available():
        return None, "no CUDA device visible (give --memory to plan for one)"
    free, total = torch.cuda.mem_get_info()
    name = torch.cuda.get_device_name()
    return float(free), f"{name}: {free / 2**30:.1f} of {total / 2**30:.1f} GiB free"


# ---- the base model, without weights --------------------------------------------------------


@dataclass
class BaseModel:
    reference: str
    config: dict[str, Any]
    tokenizer: Any | None  # None when it cannot be had offline


def model_config(reference: str, trust_remote_code: bool = False) -> dict[str, Any]:
    """A model's config as a dict, read without its weights: builtin (built if missing), random
    preset, local directory (an adapter's base), or hub id (when reachable)."""

    parsed = check_reference(reference)
    if parsed.kind == "random":
        return dict(preset_config(parsed.name).to_dict())
    if parsed.kind == "hub":
        return hub_config(parsed.name, trust_remote_code)
    return read_config(local_directory(parsed))


def read_config(directory: Path) -> dict[str, Any]:
    """`directory`'s config.json (an adapter's: its base's, read as any reference)."""
    config = directory_config(directory, model_config)
    if config is None:
        raise ModelNotFoundError(f"no config.json in {directory}")
    return config


def hub_config(name: str, trust_remote_code: bool) -> dict[str, Any]:
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise ModelNotFoundError(
            f"cannot read the config of {name!r} (not a local directory, and the hub is not "
            f"reachable or has no such model): {str(error).splitlines()[0]}"
        ) from error
    return dict(config.to_dict())


def model_tokenizer(reference: str) -> Any | None:
    """The tokenizer that lengths are measured with; None when it cannot be had offline."""

    parsed = check_reference(reference)
    if parsed.kind == "random":
        return train_tokenizer(vocab_size=400)  # what random presets are fed (presets.py)
    from transformers import AutoTokenizer

    source = parsed.name if parsed.kind == "hub" else str(local_directory(parsed))
    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError):
        return None


def load_base(reference: str, trust_remote_code: bool = False) -> BaseModel:
    return BaseModel(
        reference, model_config(reference, trust_remote_code), model_tokenizer(reference)
    )


# ---- token lengths ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatRows:
    """Text as the model sees it when the suite's chat template is on: a prompt as a user turn
    (after the system prompt), an answer as the assistant turn that follows, as the backends
    train and the engine generates (so a row is measured as it will be trained)."""

    tokenizer: Any
    system_prompt: str | None

    @classmethod
    def of(cls, suite: LoadedSuite, tokenizer: Any | None) -> ChatRows | None:
        generation = suite.spec.generation
        if not generation.chat_template or not getattr(tokenizer, "chat_template", None):
            return None
        return cls(tokenizer, generation.system_prompt)

    def prompt(self, text: str) -> str:
        messages = chat_turns(text, self.system_prompt)
        return str(
            self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        )

    def rows(
        self, rows: Sequence[dict[str, Any]], answer_fields: Sequence[str]
    ) -> list[dict[str, Any]]:
        """Each row with its prompt templated and each answer field the text after it."""
        rendered = []
        for row in rows:
            prompt = self.prompt(str(row.get("prompt", "")))
            out = dict(row, prompt=prompt)
            for name in answer_fields:
                turns = chat_turns(str(row.get("prompt", "")), self.system_prompt)
                turns.append({"role": "assistant", "content": str(row.get(name) or "")})
                whole = str(self.tokenizer.apply_chat_template(turns, tokenize=False))
                out[name] = whole.removeprefix(prompt)
            rendered.append(out)
        return rendered


def longest(tokenizer: Any, texts: Iterable[str]) -> int:
    """Tokens of the longest text (no special tokens), 0 for none."""
    batch = [t for t in texts if t]
    if not batch:
        return 0
    ids = tokenizer(batch, add_special_tokens=False)["input_ids"]
    return max(len(row) for row in ids)


def capped(length: int, cap: int | None) -> int:
    return min(length, cap) if cap else length


# ---- training --------------------------------------------------------------------------------


def lora_shape(profile: MemoryProfile, dropout: bool = False) -> LoraShape | None:
    """The adapter a candidate trains, or None when all weights train; `dropout`: its
    lora_dropout is above 0 (DoRA's saved tensors depend on it)."""
    adapter = profile.adapter
    if adapter is None:
        return None
    return LoraShape(
        adapter.r, adapter.target_modules, adapter.use_dora, adapter.method,
        adapter.virtual_tokens, adapter.layers, adapter.feedforward_modules, dropout,
    )  # fmt: skip


def frozen_shape(profile: MemoryProfile) -> FrozenShape | None:
    """What a freezing schedule trains (None: nothing frozen)."""
    frozen = profile.frozen
    return FrozenShape(frozen.trained_layers, frozen.only) if frozen else None


def training_lengths(
    profile: MemoryProfile, config: Any, rows: Sequence[dict[str, Any]], tokenizer: Any | None
) -> tuple[int, list[str]]:
    """(sequence length, notes) of a candidate's longest training rows (one that generates:
    prompt + the tokens it generates)."""
    max_length = getattr(config, "max_length", None)
    if tokenizer is None:
        fallback = max_length or FALLBACK_PROMPT_TOKENS
        return fallback, [f"no tokenizer offline: {fallback} tokens assumed"]
    prompt = longest(tokenizer, (str(r.get("prompt", "")) for r in rows))
    if profile.completion_tokens:
        return prompt + profile.completion_tokens, []
    answers = profile.answer_fields or ("",)
    pieces = [str(r.get("prompt", "")) + str(r.get(a, "")) for r in rows for a in answers]
    return capped(longest(tokenizer, pieces) + 1, max_length), []  # + eos


def sft_row_lengths(
    config: Any, rows: Sequence[dict[str, Any]], tokenizer: Any, generated: int = 0
) -> list[int]:
    """Tokens of each SFT row (prompt + completion + eos), capped at max_length; a method that
    fine-tunes on completions it sampled (rft) adds the `generated` tokens of one instead."""
    # a pretrain row is its `text` alone
    texts = [str(r.get("prompt", "")) + str(r.get("completion", r.get("text", ""))) for r in rows]
    ids = tokenizer([t for t in texts if t], add_special_tokens=False)["input_ids"] if texts else []
    max_length = getattr(config, "max_length", None)
    return [capped(len(row) + generated + 1, max_length) for row in ids]


def padding_free_tokens(
    acceleration: Acceleration,
    config: Any,
    rows: Sequence[dict[str, Any]],
    tokenizer: Any,
    generated: int = 0,
) -> int:
    """Tokens of the largest flattened micro-batch: the batch's longest rows one after another,
    or with packing its bins of max_length (at most every token of the data). 0: padded."""
    if not acceleration.padding_free or tokenizer is None:
        return 0
    lengths = sorted(sft_row_lengths(config, rows, tokenizer, generated), reverse=True)
    batch = config.per_device_train_batch_size
    if acceleration.packing:
        return int(min(batch * config.max_length, sum(lengths)))
    return sum(lengths[:batch])


def planned_acceleration(
    config: Any, device: Device, model_type: str | None
) -> tuple[Acceleration, list[str]]:
    """What the backend would decide on `device`. An explicit setting this machine cannot
    honour (liger: true without liger_kernel here) is planned as where it trains; one the
    device cannot (flash attention on a CPU) is noted and planned as `auto`."""
    try:
        return acceleration_plan(device, config, installed_libraries(), model_type), []
    except AccelerationError as error:
        missing_here = str(error)
    try:
        plan = acceleration_plan(device, config, OPTIONAL_LIBRARIES, model_type)
        return plan, [f"{missing_here} here: planned as if it is where the candidate trains"]
    except AccelerationError as error:
        relaxed = config.model_copy(
            update={"precision": "auto", "attention": "auto", "liger": "auto"}
        )
        plan = acceleration_plan(device, relaxed, installed_libraries(), model_type)
        return plan, [f"cannot train on {device.name}: {error}; planned with auto settings"]


def training_setup(
    backend: Backend,
    config: Any,
    rows: Sequence[dict[str, Any]],
    base: BaseModel,
    device: DeviceInfo,
) -> tuple[TrainingSetup, list[str]]:
    """A candidate's config and data, reduced to the numbers its memory depends on (what its
    backend's `memory_profile` says); precision, attention, batch layout and Liger as
    `harness.backends.acceleration` decides them."""
    profile = backend.memory_profile(config)
    seq_len, notes = training_lengths(profile, config, rows, base.tokenizer)
    acceleration, why = planned_acceleration(
        config, training_device(device), config_model_type(base.config)
    )
    notes += why
    quantized = profile.quantized
    generates = profile.generated_sequences > 0
    return TrainingSetup(
        sequences_per_row=max(len(profile.answer_fields), 1),
        batch_size=config.per_device_train_batch_size,
        seq_len=seq_len,
        compute_bytes=2 if acceleration.precision == "bf16" else FP32,
        gradient_checkpointing=acceleration.gradient_checkpointing,
        lora=lora_shape(profile, getattr(config, "lora_dropout", 0.0) > 0),
        frozen=frozen_shape(profile),
        quantized=quantized,
        weight_bytes=2 if acceleration.weights == "bfloat16" else FP32,
        adapter_bytes=2 if quantized else FP32,  # trl 1.16 casts a 4-bit base's adapter to bf16
        attention=acceleration.attention,
        liger=acceleration.liger,
        padding_free_tokens=padding_free_tokens(
            acceleration, config, rows, base.tokenizer, profile.completion_tokens
        ),
        reference_copy=profile.reference_copy,
        generation_sequences=profile.generated_sequences,
        generation_len=seq_len if generates else 0,
        completion_len=profile.completion_tokens,
        gpu=device.name == "cuda",
        no_grad_forwards=profile.no_grad_forwards,
        full_logits=profile.full_logits,
    ), notes


# ---- evaluation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalLengths:
    prompt: int  # longest generation prompt
    scored: int  # longest log-likelihood input (prompt + answer); 0 when no check scores
    max_new_tokens: int
    generates: bool


def evaluation_lengths(
    suite: LoadedSuite, tokenizer: Any | None, max_positions: int, chat: ChatRows | None = None
) -> EvalLengths:
    """The longest generation prompt (as templated, with `chat`) and scored text over every
    case of the suite."""
    generation = suite.spec.generation
    generative = [p for p in suite.checks if p.check.score is not None]
    scoring = [p for p in suite.checks if p.check.score is None]
    new_tokens = max(
        [generation.max_new_tokens]
        + [p.spec.generation.max_new_tokens or 0 for p in generative if p.spec.generation]
    )
    if tokenizer is None:
        return EvalLengths(FALLBACK_PROMPT_TOKENS, FALLBACK_PROMPT_TOKENS, new_tokens, True)
    template = chat.prompt if chat is not None else str
    prompt = longest(tokenizer, (template(c.prompt) for p in generative for c in p.cases))
    scored = longest(tokenizer, (_scored_text(c) for p in scoring for c in p.cases))
    return EvalLengths(prompt, min(scored, max_positions), new_tokens, bool(generative))


def _scored_text(case: Any) -> str:
    """A case's prompt and its longest string field: a log-likelihood check scores prompt +
    one choice (or a whole text), so this bounds the input of one forward row."""
    values = [v for v in case.fields.values() if isinstance(v, str)]
    values += [
        x for v in case.fields.values() if isinstance(v, list) for x in v if isinstance(x, str)
    ]
    return case.prompt + " " + max(values, key=len, default="")


def evaluation_setup(
    lengths: EvalLengths, batch_size: int, device: DeviceInfo, adapter: int = 0
) -> EvaluationSetup:
    return EvaluationSetup(
        batch_size=batch_size,
        weight_bytes=DTYPE_BYTES[device.dtype],
        prompt_len=lengths.prompt,
        max_new_tokens=lengths.max_new_tokens,
        score_len=lengths.scored,
        generates=lengths.generates,
        adapter_parameters=adapter,
    )


# ---- the suite -------------------------------------------------------------------------------


def plan_suite(
    suite: LoadedSuite,
    *,
    device: str | None = None,
    dtype: str | None = None,
    memory: str | None = None,
) -> SuitePlan:
    """Estimate the base's evaluation and every candidate's training and evaluation peak."""
    info = device_info(resolve_device(device), dtype, memory)
    base_ref = suite.models["base"]
    base = load_base(base_ref, suite.spec.trust_remote_code)
    shape = model_shape(base.config)
    chat = ChatRows.of(suite, base.tokenizer)
    lengths = evaluation_lengths(suite, base.tokenizer, shape.max_positions, chat)
    batch = suite.spec.generation.batch_size
    plan = SuitePlan(suite.name, base_ref, shape, info)
    plan.rows.append(
        PlanRow("base", None, evaluation_breakdown(shape, evaluation_setup(lengths, batch, info)))
    )
    for candidate in suite.spec.candidates:
        if candidate.name in suite.trainings:
            plan.rows.append(
                trained_row(
                    candidate,
                    suite.trainings[candidate.name],
                    base,
                    shape,
                    lengths,
                    batch,
                    info,
                    chat,
                )
            )
        elif candidate.name in suite.models:
            plan.rows.append(evaluated_row(candidate.name, suite, lengths, batch, info))
    return plan


def trained_row(
    candidate: Any, planned: Any, base: BaseModel, shape: ModelShape,
    lengths: EvalLengths, batch: int, info: DeviceInfo, chat: ChatRows | None = None,
) -> PlanRow:  # fmt: skip
    config = planned.config
    notes: list[str] = []
    if getattr(config, "task", "causal_lm") == "classification":
        notes.append("classification head: estimated as the causal LM (an upper bound)")
    backend = BACKENDS.get(candidate.backend)
    rows = planned.rows
    if chat is not None:  # measured as trained: templated, system prompt included
        rows = chat.rows(rows, backend.memory_profile(config).answer_fields)
    setup, length_notes = training_setup(backend, config, rows, base, info)
    acceleration, _ = planned_acceleration(
        config, training_device(info), config_model_type(base.config)
    )
    adapter = adapter_parameters(shape, setup.lora) if setup.lora and not planned.merge else 0
    evaluation = evaluation_breakdown(shape, evaluation_setup(lengths, batch, info, adapter))
    training = training_breakdown(shape, setup)
    notes.append(f"trains with {acceleration.describe()}")
    if planned.accelerate is not None:
        sharding = launch_sharding(planned.accelerate)
        training = sharded(training, sharding)
        notes.append(sharding_note(sharding))
    return PlanRow(
        candidate.name, candidate.backend, evaluation, training, setup.seq_len,
        tuple(notes + length_notes), acceleration.record(),
    )  # fmt: skip


def evaluated_row(
    name: str, suite: LoadedSuite, lengths: EvalLengths, batch: int, info: DeviceInfo
) -> PlanRow:
    """An already trained candidate: its own config (an adapter directory: its base's + the adapter)."""
    reference = suite.models[name]
    shape = model_shape(model_config(reference, suite.spec.trust_remote_code))
    adapter = saved_adapter_parameters(reference, shape)
    return PlanRow(
        name, None, evaluation_breakdown(shape, evaluation_setup(lengths, batch, info, adapter))
    )


def saved_adapter_parameters(reference: str, shape: ModelShape) -> int:
    path = Path(reference) / "adapter_config.json"
    if not path.is_file():
        return 0
    config = json.loads(path.read_text(encoding="utf-8"))
    return adapter_parameters(shape, saved_adapter_shape(config))


# peft's adapter_config.json `peft_type` -> the planner's method
SAVED_METHODS = {
    "IA3": "ia3",
    "PROMPT_TUNING": "prompt_tuning",
    "PREFIX_TUNING": "prefix_tuning",
    "ADAPTION_PROMPT": "adaption_prompt",
}


def saved_adapter_shape(config: dict[str, Any]) -> LoraShape:
    """A saved adapter's shape from its adapter_config.json (LoRA unless it says otherwise)."""
    targets = config.get("target_modules") or "all-linear"
    return LoraShape(
        int(config.get("r") or 0),
        targets if isinstance(targets, str) else tuple(targets),
        bool(config.get("use_dora", False)),
        SAVED_METHODS.get(str(config.get("peft_type")), "lora"),
        int(config.get("num_virtual_tokens") or config.get("adapter_len") or 0),
        config.get("adapter_layers"),
        tuple(config.get("feedforward_modules") or ()),
    )


__all__ = ["FP32", "DeviceInfo", "PlanRow", "SuitePlan", "plan_suite"]


# --- accelerate launches -----------------------------------------------------------------------

# FSDP1's sharding strategies by name and by the numbers older accelerate configs write.
FSDP_STRATEGIES = {
    "1": "FULL_SHARD", "2": "SHARD_GRAD_OP", "3": "NO_SHARD", "4": "HYBRID_SHARD",
    "5": "HYBRID_SHARD_ZERO2",
}  # fmt: skip


def launch_sharding(launch: Any) -> Sharding:
    """What an `accelerate:` launch shards, read from its accelerate config file (plain data
    parallel without one). On one machine a hybrid strategy shards like its plain form."""
    config = _accelerate_config(launch.config_file)
    n = launch.num_processes
    kind = str(config.get("distributed_type", "MULTI_GPU")).upper()
    if n < 2:
        return Sharding(n, "one process")
    if kind == "FSDP":
        return _fsdp_sharding(n, config.get("fsdp_config") or {})
    if kind == "DEEPSPEED":
        return _zero_sharding(n, _zero_stage(config.get("deepspeed_config") or {}))
    return Sharding(n, "DDP")


def _accelerate_config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    import yaml

    loaded = (
        json.loads(path.read_text(encoding="utf-8"))
        if path.suffix == ".json"
        else yaml.safe_load(path.read_text(encoding="utf-8"))
    )
    return loaded if isinstance(loaded, dict) else {}


def _fsdp_sharding(n: int, fsdp: dict[str, Any]) -> Sharding:
    if str(fsdp.get("fsdp_version", 1)) == "2":
        # FSDP2 shards everything at rest; not resharding after forward keeps the weights whole.
        whole = fsdp.get("fsdp_reshard_after_forward", True) in (False, "false", "False")
        strategy = "SHARD_GRAD_OP" if whole else "FULL_SHARD"
    else:
        raw = str(fsdp.get("fsdp_sharding_strategy", "FULL_SHARD")).upper()
        strategy = FSDP_STRATEGIES.get(raw, raw).removeprefix("HYBRID_")
        strategy = {"SHARD": "FULL_SHARD", "SHARD_ZERO2": "SHARD_GRAD_OP"}.get(strategy, strategy)
    stage = {"FULL_SHARD": 3, "SHARD_GRAD_OP": 2}.get(strategy, 0)
    return replace(_zero_sharding(n, stage), name=f"FSDP {strategy}")


def _zero_stage(deepspeed: dict[str, Any]) -> int:
    if "zero_stage" in deepspeed:
        return int(deepspeed["zero_stage"])
    config_file = deepspeed.get("deepspeed_config_file")
    if config_file and Path(config_file).is_file():
        ds = json.loads(Path(config_file).read_text(encoding="utf-8"))
        return int((ds.get("zero_optimization") or {}).get("stage", 0))
    return 0


def _zero_sharding(n: int, stage: int) -> Sharding:
    return Sharding(
        n, f"ZeRO-{stage}", optimizer=stage >= 1, gradients=stage >= 2, weights=stage >= 3
    )


def sharding_note(sharding: Sharding) -> str:
    divided = [
        name
        for name, flag in (
            ("weights", sharding.weights),
            ("gradients", sharding.gradients),
            ("optimizer states", sharding.optimizer),
        )
        if flag
    ]
    what = (
        ", ".join(divided) + f" divided by {sharding.processes}" if divided else "nothing sharded"
    )
    return f"accelerate, {sharding.processes} processes, {sharding.name}: per GPU ({what})"
