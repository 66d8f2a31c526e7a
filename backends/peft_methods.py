"""peft's parameter-efficient methods beyond LoRA: each a causal-LM backend on prompt/completion
rows, trained by trl's SFTTrainer (`sft_trainer`) with the method's peft config.

- `prompt_tuning`: `num_virtual_tokens` trainable embeddings before every input
  (PromptTuningConfig), initialised from a text's token embeddings or at random.
- `prefix_tuning`: trainable keys and values for `num_virtual_tokens` positions in every layer
  (PrefixTuningConfig). Refused at validation: with transformers 5.24 and peft 0.21.2, `generate`
  drops the prefix (see PREFIX_TUNING_BROKEN), so every generative check would score the base.
- `ia3`: a learned vector scaling the outputs of some linears and the inputs of the feedforward
  ones (IA3Config; peft's defaults for Llama: k_proj, v_proj and down_proj, down_proj's input).
- `llama_adapter`: LLaMA-Adapter's zero-gated adaption prompts in the top layers
  (AdaptionPromptConfig), on the architectures peft implements it for (checked at validation
  when the base's config.json can be read without loading it, `base_problems`, and again when
  training starts).

Their adapters load back through `load_model` like LoRA's. Only IA3 merges into the base
(`merge: true`): virtual tokens, prefixes and adaption prompts are no change of the base's
weights, so `trains_adapter` is False for them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from pydantic import Field

from harness.backends import AdapterShape, MemoryProfile, TrainRequest, TrainResult
from harness.backends.acceleration import Switch, acceleration_problems, config_model_type
from harness.backends.common import (
    SFT_FIELDS,
    SFTArgs,
    TrainerBackend,
    plan_acceleration,
    sft_trainer,
    train_with,
)
from harness.backends.freezing import config_layer_count
from harness.core.device import pick_device
from harness.core.errors import HarnessError
from harness.models.configs import read_config

# ---- configs ---------------------------------------------------------------------------------


class VirtualTokenArgs(SFTArgs):
    """Prompt and prefix tuning: virtual tokens before every row. Never padding-free or packed:
    peft puts the virtual tokens before the whole flattened sequence and ignores position_ids."""

    num_virtual_tokens: int = Field(20, ge=1, description="Virtual tokens learned")
    padding_free: Switch = Field(
        False, description="Always false: virtual tokens go before each row, unflattened"
    )


class PromptTuningArgs(VirtualTokenArgs):
    learning_rate: float = Field(3e-2, gt=0)
    init_text: str | None = Field(
        None,
        description="Start the virtual tokens as this text's token embeddings (repeated or cut "
        "to num_virtual_tokens); none: at random",
    )


class PrefixTuningArgs(VirtualTokenArgs):
    learning_rate: float = Field(1e-2, gt=0)


class IA3Args(SFTArgs):
    learning_rate: float = Field(3e-3, gt=0)
    target_modules: list[str] | None = Field(
        None, description="Linears scaled (default: peft's for the architecture)"
    )
    feedforward_modules: list[str] | None = Field(
        None,
        description="Targets scaled on their input instead of their output (default: peft's "
        "for the architecture when target_modules is default, else none)",
    )


class LlamaAdapterArgs(SFTArgs):
    learning_rate: float = Field(9e-3, gt=0)
    adapter_len: int = Field(10, ge=1, description="Adaption prompt tokens in each adapted layer")
    adapter_layers: int | None = Field(
        None, ge=1, description="The top decoder layers adapted (default: all)"
    )


# ---- refusals --------------------------------------------------------------------------------

PREFIX_TUNING_BROKEN = (
    "prefix_tuning cannot be evaluated with transformers 5.24 and peft 0.21.2: generate() drops "
    "the trained prefix (peft passes it as `past_key_values`, which transformers 5 renamed "
    "`cache`, and the generation's own cache wins), so every generative check would score the "
    "base model; use prompt_tuning or llama_adapter"
)


def virtual_token_problems(config: VirtualTokenArgs) -> list[str]:
    found = []
    if config.packing:
        found.append(
            "packing: virtual tokens go before each row, and peft ignores position_ids, so "
            "rows cannot be packed; remove packing"
        )
    if config.padding_free is not False:
        found.append(
            f"padding_free: {config.padding_free}: virtual tokens go before each row, and peft "
            "ignores position_ids, so rows cannot be flattened; remove padding_free"
        )
    return found + acceleration_problems(config)


def prompt_tuning_problems(config: PromptTuningArgs) -> list[str]:
    if config.init_text is not None and not config.init_text.strip():
        return ["init_text is blank: give a text, or leave init_text out for a random start"]
    return virtual_token_problems(config)


def prefix_tuning_problems(config: PrefixTuningArgs) -> list[str]:
    return [PREFIX_TUNING_BROKEN, *virtual_token_problems(config)]


def ia3_problems(config: IA3Args) -> list[str]:
    found = []
    targets, feedforward = config.target_modules, config.feedforward_modules
    if feedforward is not None and targets is None:
        found.append("feedforward_modules needs target_modules (they must be among them)")
    outside = sorted(set(feedforward or ()) - set(targets or ()))
    if feedforward is not None and targets is not None and outside:
        found.append(f"feedforward_modules {outside} are not in target_modules {targets}")
    if targets is not None and "lm_head" in targets:
        found.append("target_modules: an adapter on lm_head is never trained by trl; remove it")
    return found + acceleration_problems(config)


def llama_adapter_problems(config: LlamaAdapterArgs) -> list[str]:
    return acceleration_problems(config)


# peft 0.21.2's TRANSFORMERS_MODEL_CONFIG (peft.tuners.adaption_prompt.config), the architectures
# it implements adaption prompts for; held here because validation does not import peft (a test
# compares the two).
ADAPTION_PROMPT_MODEL_TYPES = ("gpt2", "llama", "mistral")


def llama_adapter_base_problems(
    config: LlamaAdapterArgs,
    base_config: Mapping[str, Any],
    supported: Collection[str] = ADAPTION_PROMPT_MODEL_TYPES,
) -> list[str]:
    """What the base's config refuses: an architecture without adaption prompts in peft, more
    adapted layers than it has (validate time, and again when training starts)."""
    model_type = config_model_type(base_config)
    if model_type is not None and model_type not in supported:
        return [
            f"llama_adapter: peft implements adaption prompts for {', '.join(sorted(supported))} "
            f"bases, not {model_type!r}; use prompt_tuning, ia3 or lora"
        ]
    layers, wanted = config_layer_count(base_config), config.adapter_layers
    if layers is not None and wanted is not None and wanted > layers:
        return [
            f"llama_adapter: adapter_layers {wanted}, but the base has {layers} decoder layers; "
            f"give at most {layers}"
        ]
    return []


# ---- peft configs ----------------------------------------------------------------------------


def prompt_tuning_peft(config: PromptTuningArgs, request: TrainRequest) -> Any:
    from peft import PromptTuningConfig, PromptTuningInit

    if config.init_text is None:
        return PromptTuningConfig(
            task_type="CAUSAL_LM", num_virtual_tokens=config.num_virtual_tokens
        )
    return PromptTuningConfig(
        task_type="CAUSAL_LM",
        num_virtual_tokens=config.num_virtual_tokens,
        prompt_tuning_init=PromptTuningInit.TEXT,
        prompt_tuning_init_text=config.init_text,
        tokenizer_name_or_path=str(request.base_dir),
    )


def prefix_tuning_peft(config: PrefixTuningArgs, request: TrainRequest) -> Any:
    from peft import PrefixTuningConfig

    return PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=config.num_virtual_tokens)


def ia3_peft(config: IA3Args, request: TrainRequest) -> Any:
    from peft import IA3Config

    feedforward = config.feedforward_modules
    if config.target_modules is not None and feedforward is None:
        feedforward = []  # peft would take its architecture's, which need not be targets
    return IA3Config(
        task_type="CAUSAL_LM",
        target_modules=config.target_modules,
        feedforward_modules=feedforward,
    )


def llama_adapter_peft(config: LlamaAdapterArgs, request: TrainRequest) -> Any:
    from peft import AdaptionPromptConfig
    from peft.tuners.adaption_prompt.config import TRANSFORMERS_MODEL_CONFIG

    # What validation checked when it could read the base, now against what peft really has
    # (and before transformers reads an architecture it may not know).
    base = read_config(request.base_dir, lambda _: None) or {}
    if found := llama_adapter_base_problems(config, base, TRANSFORMERS_MODEL_CONFIG):
        raise HarnessError(found[0])
    return AdaptionPromptConfig(
        task_type="CAUSAL_LM",
        adapter_len=config.adapter_len,
        adapter_layers=config.adapter_layers or base_layer_count(request),
    )


def base_layer_count(request: TrainRequest) -> int:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(request.base_dir)).get_text_config()
    return int(config.num_hidden_layers)


def fused_head_through_adaption_prompts(trainer: Any) -> None:
    """trl patches its fused LM head onto the base's `forward` after peft wrapped the model, and
    peft's AdaptionPromptModel copied that `forward` when it wrapped it: point it at the patched
    one, else trl's loss finds no log-probs (`'CausalLMOutputWithPast' ... no 'log_probs'`)."""
    wrapper = trainer.model.base_model
    wrapper.forward = wrapper.model.forward


# ---- training --------------------------------------------------------------------------------

# What a method records (TrainResult.details): what peft made of its config.
RECORDED = {
    "PROMPT_TUNING": ("num_virtual_tokens", "prompt_tuning_init"),
    "PREFIX_TUNING": ("num_virtual_tokens",),
    "IA3": ("target_modules", "feedforward_modules"),
    "ADAPTION_PROMPT": ("adapter_len", "adapter_layers"),
}


def train_peft(
    request: TrainRequest,
    make_config: Callable[[Any, TrainRequest], Any],
    after_build: Callable[[Any], None] | None = None,
) -> TrainResult:
    """Supervised fine-tuning with the peft config `make_config` builds; the peft model's
    resolved settings are recorded as the training's details."""
    config = request.config
    plan = plan_acceleration(config, request, pick_device())
    peft_config = make_config(config, request)

    def make_trainer(callbacks: list[Any]) -> Any:
        trainer = sft_trainer(request, config, None, False, callbacks, plan, peft_config)
        if after_build is not None:
            after_build(trainer)
        return trainer

    def details(trainer: Any) -> dict[str, Any]:
        return method_details(trainer.model.active_peft_config)

    return train_with(make_trainer, request, plan, details)


def method_details(peft_config: Any) -> dict[str, Any]:
    peft_type = str(getattr(peft_config.peft_type, "value", peft_config.peft_type))
    details: dict[str, Any] = {"peft_type": peft_type}
    for name in RECORDED.get(peft_type, ()):
        value = getattr(peft_config, name)
        if isinstance(value, set | tuple | list):
            value = sorted(value)
        details[name] = getattr(value, "value", value)  # enums as their names
    return details


def train_prompt_tuning(request: TrainRequest) -> TrainResult:
    return train_peft(request, prompt_tuning_peft)


def train_prefix_tuning(request: TrainRequest) -> TrainResult:
    return train_peft(request, prefix_tuning_peft)


def train_ia3(request: TrainRequest) -> TrainResult:
    return train_peft(request, ia3_peft)


def train_llama_adapter(request: TrainRequest) -> TrainResult:
    return train_peft(request, llama_adapter_peft, fused_head_through_adaption_prompts)


# ---- what validation and the planner ask -----------------------------------------------------

# peft's IA3 defaults for Llama-like bases (and Qwen2, Mistral, ...): the planner counts these.
IA3_DEFAULT_TARGETS = ("k_proj", "v_proj", "down_proj")
IA3_DEFAULT_FEEDFORWARD = ("down_proj",)


def required_fields(config: Any) -> set[str]:
    return set(SFT_FIELDS)


def merges(config: Any) -> bool:
    """IA3's vectors fold into the weights they scale."""
    return True


def never_merges(config: Any) -> bool:
    """Virtual tokens, prefixes and adaption prompts are no change of the base's weights."""
    return False


def prompt_tuning_profile(config: PromptTuningArgs) -> MemoryProfile:
    shape = AdapterShape(0, (), method="prompt_tuning", virtual_tokens=config.num_virtual_tokens)
    return MemoryProfile(adapter=shape)


def prefix_tuning_profile(config: PrefixTuningArgs) -> MemoryProfile:
    shape = AdapterShape(0, (), method="prefix_tuning", virtual_tokens=config.num_virtual_tokens)
    return MemoryProfile(adapter=shape)


def ia3_profile(config: IA3Args) -> MemoryProfile:
    targets = tuple(config.target_modules or IA3_DEFAULT_TARGETS)
    feedforward = config.feedforward_modules
    if feedforward is None:
        feedforward = [] if config.target_modules is not None else list(IA3_DEFAULT_FEEDFORWARD)
    shape = AdapterShape(0, targets, method="ia3", feedforward_modules=tuple(feedforward))
    return MemoryProfile(adapter=shape)


def llama_adapter_profile(config: LlamaAdapterArgs) -> MemoryProfile:
    shape = AdapterShape(
        0,
        (),
        method="adaption_prompt",
        virtual_tokens=config.adapter_len,
        layers=config.adapter_layers,
    )
    return MemoryProfile(adapter=shape)


PROMPT_TUNING = TrainerBackend(
    "prompt_tuning", PromptTuningArgs, required_fields, prompt_tuning_problems,
    train_prompt_tuning, never_merges, prompt_tuning_profile,
)  # fmt: skip
PREFIX_TUNING = TrainerBackend(
    "prefix_tuning", PrefixTuningArgs, required_fields, prefix_tuning_problems,
    train_prefix_tuning, never_merges, prefix_tuning_profile,
)  # fmt: skip
IA3 = TrainerBackend("ia3", IA3Args, required_fields, ia3_problems, train_ia3, merges, ia3_profile)
LLAMA_ADAPTER = TrainerBackend(
    "llama_adapter", LlamaAdapterArgs, required_fields, llama_adapter_problems,
    train_llama_adapter, never_merges, llama_adapter_profile,
    base_problems=llama_adapter_base_problems,
)  # fmt: skip
