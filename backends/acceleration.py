"""How a candidate trains on the device it has: precision, attention kernel, padding-free or packed
batches, Liger kernels, gradient checkpointing.

One pure function, `acceleration_plan`, decides from the device, the backend config and the
optional libraries installed; the backends train with its answer and record it, and `harness plan`
estimates memory from the same answer, so the plan and the training cannot disagree. Nothing here
imports torch: `installed_libraries` and `base_model_type` are the only functions that look
outside their arguments.

The defaults (each `auto`), and why:

- precision: bf16 on a CUDA GPU that has it, else fp32. bf16 is autocast: weights that train stay
  float32 (the optimizer's master weights; pure-bf16 weights lose updates smaller than 1/256 of the
  weight, which is most of them at fine-tuning learning rates), while the frozen base under an
  adapter (lora, qlora's non-4-bit parts, dpo/grpo with `adapter: lora`) is loaded in bf16: it
  never updates and autocast would compute its matmuls in bf16 anyway, so it costs half the memory
  for the same maths. A classification head trains in full beside its adapter, so `task:
  classification` keeps float32 weights. `precision: bf16` asks for it anywhere (CPU autocast
  included); `fp32` turns it off.
- attention: flash_attention_2 on CUDA when `flash_attn` is installed, the precision is bf16 and
  the architecture is one transformers runs with it; otherwise transformers' default, SDPA (eager
  for an architecture without SDPA).
- padding_free (SFT): on only with flash_attention_2, whose varlen kernel sees each sequence alone,
  so the flattened batch costs exactly its tokens. transformers 5 also honours `position_ids` with
  SDPA and eager attention in training (it builds a block-diagonal mask; tested on the CPU), so
  `padding_free: true` is correct there too, but attention then spans the whole flattened batch
  (batch x its cost), hence not the default.
- packing (SFT): off unless asked. trl's best-fit-decreasing packing changes what a batch is
  (bins of `max_length` tokens), so the number of steps per epoch and the optimisation change
  with it; it is always padding-free.
- liger: Liger's Triton kernels (RMSNorm, RoPE, SwiGLU) on CUDA when `liger_kernel` is installed
  and has kernels for the architecture. trl 1.16 applies them through `use_liger_kernel` (marked
  deprecated in favour of Hub kernels, `model_init_kwargs={"use_kernels": True}`, which fetch
  their code from the Hub when the model loads: no use on an offline machine, so the installed
  package is the route taken). trl keeps its own chunked LM head and switches Liger's fused linear
  cross-entropy off, so Liger changes the decoder layers' memory, not the logits'.
- gradient_checkpointing: off unless asked (it trades about a third more compute for activations).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from harness.core.device import Device
from harness.core.errors import HarnessError
from harness.core.strict import Strict

Precision = Literal["bf16", "fp32"]
Attention = Literal["sdpa", "eager", "flash_attention_2"]
# One Literal each (not a union with "auto"), so a wrong value gets one message listing them all.
PrecisionChoice = Literal["auto", "bf16", "fp32"]
AttentionChoice = Literal["auto", "sdpa", "eager", "flash_attention_2"]
Switch = Literal["auto", True, False]
OPTIONAL_LIBRARIES = ("liger_kernel", "flash_attn", "kernels")

# Architectures transformers runs with flash_attention_2 (decoders; encoders get SDPA).
FLASH_ATTENTION_TYPES = frozenset(
    {"llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma", "gemma2",
     "gemma3_text", "phi3", "olmo2", "olmo3", "granite", "smollm3", "starcoder2", "cohere",
     "glm4", "ministral"}
)  # fmt: skip
# Text decoders liger-kernel 0.8 patches (its MODEL_TYPE_TO_APPLY_LIGER_FN, vision models left out).
LIGER_TYPES = frozenset(
    {"llama", "mistral", "mixtral", "qwen2", "qwen3", "qwen3_moe", "gemma", "gemma2",
     "gemma3_text", "phi3", "olmo2", "olmo3", "granite", "smollm3", "glm4", "ministral",
     "deepseek_v2", "deepseek_v3", "nemotron", "exaone4", "hunyuan_v1_dense", "hunyuan_v1_moe"}
)  # fmt: skip


class AccelerationError(HarnessError):
    """An explicit setting the device or the installed libraries cannot honour (at train time)."""


# ---- config pieces ---------------------------------------------------------------------------


class AccelerationArgs(Strict):
    """Kernel and precision settings every backend takes (each `auto` decides by device)."""

    precision: PrecisionChoice = Field(
        "auto", description="auto: bf16 autocast on a CUDA GPU with bf16, else fp32"
    )
    attention: AttentionChoice = Field(
        "auto",
        description="auto: flash_attention_2 on CUDA when flash_attn is installed, else sdpa",
    )
    liger: Switch = Field(
        "auto", description="Liger kernels (auto: on CUDA when liger_kernel is installed)"
    )
    gradient_checkpointing: bool = False


class BatchingArgs(Strict):
    """How SFT batches are laid out (trl's SFTTrainer only)."""

    padding_free: Switch = Field(
        "auto",
        description="Flatten each batch into one sequence, no padding (auto: with flash attention)",
    )
    packing: bool = Field(
        False, description="Pack rows into max_length bins (trl's best-fit decreasing)"
    )


# ---- the decision ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Acceleration:
    """What a candidate trains with, and why (the `auto` decisions, in words)."""

    precision: Precision  # bf16: autocast; fp32: none
    weights: Literal["bfloat16", "float32"]  # the dtype the base's weights are loaded in
    attention: Attention
    padding_free: bool
    packing: bool
    liger: bool
    gradient_checkpointing: bool
    attention_requested: bool = True  # False: leave it to transformers (sdpa, else eager)
    reasons: tuple[str, ...] = ()

    @property
    def attn_implementation(self) -> str | None:
        """What `from_pretrained` is given (None: transformers' own default, SDPA)."""
        return self.attention if self.attention_requested else None

    def record(self) -> dict[str, Any]:
        """What a training records (the same keys the backends read back from the trainer)."""
        return {
            "precision": self.precision,
            "weights": self.weights,
            "attention": self.attention,
            "padding_free": self.padding_free,
            "packing": self.packing,
            "liger": self.liger,
            "gradient_checkpointing": self.gradient_checkpointing,
        }

    def describe(self) -> str:
        """One line, for `harness plan`'s notes."""
        precision = "fp32" if self.precision == "fp32" else f"bf16 autocast, {self.weights} weights"
        batches = "packed" if self.packing else "padding-free" if self.padding_free else "padded"
        parts = [precision, self.attention, f"{batches} batches"]
        parts += ["Liger"] if self.liger else []
        parts += ["gradient checkpointing"] if self.gradient_checkpointing else []
        return ", ".join(parts)


def trains_adapter(config: Any) -> bool:
    """A LoRA adapter on a frozen base (lora, qlora; dpo and grpo unless `adapter: full`)."""
    return hasattr(config, "r") and getattr(config, "adapter", "lora") == "lora"


def acceleration_plan(
    device: Device,
    config: AccelerationArgs,
    installed: Collection[str],
    model_type: str | None = None,
) -> Acceleration:
    """Decide precision, attention, batch layout, Liger and checkpointing (see the module doc).

    `installed` names the optional libraries present (`installed_libraries()`), `model_type` the
    base's architecture (config.json's `model_type`; None when unknown: no flash attention or
    Liger by default). An explicit setting that this device or these libraries cannot honour
    raises AccelerationError; combinations that no device can honour are `acceleration_problems`.
    """
    reasons: list[str] = []
    cuda = device.name == "cuda"
    classification = getattr(config, "task", "causal_lm") == "classification"

    precision = _precision(device, config.precision, reasons)
    frozen_base = trains_adapter(config) and not classification
    weights: Literal["bfloat16", "float32"] = (
        "bfloat16" if precision == "bf16" and frozen_base else "float32"
    )

    attention, requested = _attention(cuda, config.attention, precision, installed, model_type)
    if config.attention == "auto":
        reasons.append(_attention_reason(attention, cuda, precision, installed, model_type))

    padding_free = packing = False
    if isinstance(config, BatchingArgs) and not classification:
        packing = config.packing
        if config.padding_free == "auto":
            padding_free = packing or attention == "flash_attention_2"
            if not padding_free:
                reasons.append("padded batches: padding-free is the default with flash attention")
        else:
            padding_free = config.padding_free or packing

    liger = _liger(cuda, config.liger, installed, model_type, reasons)
    return Acceleration(
        precision=precision,
        weights=weights,
        attention=attention,
        padding_free=padding_free,
        packing=packing,
        liger=liger,
        gradient_checkpointing=config.gradient_checkpointing,
        attention_requested=requested,
        reasons=tuple(reasons),
    )


def _precision(device: Device, asked: str, reasons: list[str]) -> Precision:
    if asked == "fp32":
        return "fp32"
    if asked == "bf16":
        if device.name == "cuda" and not device.bf16:
            raise AccelerationError(
                "precision: bf16, but this GPU has no bf16 support; use precision: auto or fp32"
            )
        return "bf16"
    if device.name == "cuda" and device.bf16:
        reasons.append("bf16: a CUDA GPU with bf16")
        return "bf16"
    reasons.append("fp32: " + ("this GPU has no bf16" if device.name == "cuda" else "no GPU"))
    return "fp32"


def _attention(
    cuda: bool,
    asked: str,
    precision: Precision,
    installed: Collection[str],
    model_type: str | None,
) -> tuple[Attention, bool]:
    if asked == "flash_attention_2":
        if not cuda:
            raise AccelerationError("attention: flash_attention_2 needs a CUDA GPU")
        if "flash_attn" not in installed:
            raise AccelerationError(
                "attention: flash_attention_2, but flash_attn is not installed "
                "(pip install flash-attn); use attention: auto or sdpa"
            )
        if precision != "bf16":
            raise AccelerationError(
                "attention: flash_attention_2 computes in 16 bits, and this candidate trains in "
                "fp32 (this GPU has no bf16); use attention: auto or sdpa"
            )
        return "flash_attention_2", True
    if asked in ("sdpa", "eager"):
        return asked, True  # type: ignore[return-value]
    flash = (
        cuda
        and precision == "bf16"
        and "flash_attn" in installed
        and model_type in FLASH_ATTENTION_TYPES
    )
    return ("flash_attention_2", True) if flash else ("sdpa", False)


def _attention_reason(
    attention: Attention,
    cuda: bool,
    precision: Precision,
    installed: Collection[str],
    model_type: str | None,
) -> str:
    if attention == "flash_attention_2":
        return "flash_attention_2: flash_attn installed"
    why = (
        "no GPU"
        if not cuda
        else "fp32"
        if precision != "bf16"
        else "flash_attn not installed"
        if "flash_attn" not in installed
        else f"model type {model_type} not run with flash attention"
    )
    return f"sdpa: {why}"


def _liger(
    cuda: bool,
    asked: bool | str,
    installed: Collection[str],
    model_type: str | None,
    reasons: list[str],
) -> bool:
    if asked is False:
        return False
    missing = (
        "no CUDA GPU (Liger's kernels are Triton, CUDA only)"
        if not cuda
        else "liger_kernel is not installed (pip install liger-kernel)"
        if "liger_kernel" not in installed
        else f"Liger has no kernels for model type {model_type}"
        if model_type not in LIGER_TYPES
        else None
    )
    if missing is None:
        if asked == "auto":
            reasons.append("Liger: liger_kernel installed")
        return True
    if asked is True:
        raise AccelerationError(f"liger: true, but {missing}")
    reasons.append(f"no Liger: {missing}")
    return False


def acceleration_problems(config: AccelerationArgs) -> list[str]:
    """Settings no device can honour together, for the backend's `problems` (validate time)."""
    found = []
    if config.attention == "flash_attention_2" and config.precision == "fp32":
        found.append(
            "attention: flash_attention_2 computes in 16 bits; it cannot train with "
            "precision: fp32 (use auto or bf16)"
        )
    if not isinstance(config, BatchingArgs):
        return found
    classification = getattr(config, "task", "causal_lm") == "classification"
    given = [
        name
        for name in ("packing", "padding_free")
        if name in config.model_fields_set and getattr(config, name) is True
    ]
    if classification and given:
        found += [f"{name} applies to SFT; task: classification pads its batches" for name in given]
        return found
    if config.packing and getattr(config, "max_length", 0) is None:
        found.append("packing: true needs max_length (the length of a packed bin)")
    if config.packing and config.padding_free is False:
        found.append(
            "packing: true is always padding-free (trl flattens the packed bins); "
            "remove padding_free: false"
        )
    return found


# ---- the world outside: installed libraries, the base's architecture ------------------------


def installed_libraries(names: Iterable[str] = OPTIONAL_LIBRARIES) -> frozenset[str]:
    """Which of the optional kernel libraries this Python can import (without importing them)."""
    return frozenset(name for name in names if importlib.util.find_spec(name) is not None)


def base_model_type(base_dir: Path) -> str | None:
    """The model_type of a model directory's config.json, None when unreadable."""
    try:
        config = json.loads((base_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config_model_type(config)


def config_model_type(config: Mapping[str, Any]) -> str | None:
    """A config's model_type (a multimodal config's text model's: what the kernels patch)."""
    text = config.get("text_config") or {}
    value = text.get("model_type") or config.get("model_type")
    return str(value) if value else None
