"""Trainer backends, installed as `harness.backends`: one module per fine-tuning method.

A backend is a plain object with a `name`, a pydantic `Config` (the suite's `args:`, validated
at `harness validate` time like everything else), a `problems` function that refuses impossible
combinations before anything trains, `trains_adapter` and `memory_profile` (what validation and
the memory planner need to know of a config), and `train`. No base class: shared Hugging Face set-up
lives in plain functions (`harness.backends.common`). Third parties add a backend through the
`harness.backends` entry-point group; the entry point names an object with the same attributes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from harness.core.registry import Registry


@dataclass(frozen=True)
class TrainProgress:
    """One report from a training loop: shown as stage, step/total, loss and ETA."""

    step: int
    total_steps: int
    loss: float | None = None
    phase: str = "training"  # what the steps count: "sampling" for RFT's generation batches


@dataclass(frozen=True)
class Checkpoint:
    """The model in the middle of training, as a checkpoint hook sees it (in eval mode for the
    duration of the call; training resumes after it)."""

    step: int
    total_steps: int
    model: Any  # the trainer's model: a transformers model, or a peft model wrapping one
    tokenizer: Any
    save: Callable[[Path], None]  # writes these weights where the final model would go


@dataclass(frozen=True)
class CheckpointHook:
    """Called every `every` optimizer steps and at the last one; returns True to stop."""

    every: int
    evaluate: Callable[[Checkpoint], bool]


@dataclass(frozen=True)
class TrainRequest:
    """Everything a backend needs to train one candidate."""

    base_dir: Path  # the base model as a local HF directory (builtin and hub models resolved)
    rows: Sequence[dict[str, Any]]  # the candidate's training data set
    config: Any  # an instance of the backend's Config
    seed: int
    output_dir: Path  # where to save the result (an empty directory)
    progress: Callable[[TrainProgress], None] = lambda _: None
    # GRPO: scores completions; reward(completions, rows) -> one float per completion.
    reward: Callable[[list[str], list[dict[str, Any]]], list[float]] | None = None
    chat_template: bool = False  # format prompts with the base tokenizer's chat template
    system_prompt: str | None = None  # with the template: the system turn before each prompt
    checkpoints: CheckpointHook | None = None  # evaluate while training (every backend)


@dataclass(frozen=True)
class TrainResult:
    """What a backend reports; the harness adds wall time, peak memory and size on disk."""

    model_dir: Path  # loadable by harness.models.loading.load_model (a full model or an adapter)
    is_adapter: bool
    trainable_parameters: int
    total_parameters: int
    train_tokens: int  # tokens the model was trained on (no padding), for tokens/s
    final_loss: float | None
    loss_curve: list[tuple[int, float]] = field(default_factory=list)  # (step, training loss)
    device: str = "cpu"
    # What it trained with: precision, weights (dtype), attention, padding_free, packing, liger,
    # gradient_checkpointing (harness.backends.acceleration; read back from the trainer)
    acceleration: dict[str, Any] = field(default_factory=dict)
    # What only this method has to say of its training (RFT: completions sampled and kept;
    # a freezing schedule: the layers trained when): recorded as training.method, JSON values.
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AdapterShape:
    """The adapter a candidate trains (LoRA unless `method` says otherwise): what its size and
    memory depend on."""

    r: int  # LoRA's rank; 0 for the other methods
    target_modules: str | tuple[str, ...] = "all-linear"  # LoRA's and IA3's wrapped linears
    use_dora: bool = False
    # peft's method: "lora", "ia3" (a vector per target: its output, or its input for the
    # feedforward modules), "prompt_tuning" (virtual token embeddings before the input),
    # "prefix_tuning" (virtual keys and values in every layer), "adaption_prompt" (a prompt and
    # a gate in the top `layers`)
    method: str = "lora"
    virtual_tokens: int = 0  # prompt/prefix tuning's virtual tokens; adaption prompt's length
    layers: int | None = None  # adaption prompt: the top layers adapted (None: all)
    feedforward_modules: tuple[str, ...] = ()  # IA3: targets scaled on their input


@dataclass(frozen=True)
class FrozenLayers:
    """Full fine-tuning with most weights frozen (the full backend's `freeze:`): what trains."""

    trained_layers: int | None = None  # the top decoder layers that ever train; None: all
    # "attention" or "mlp": only those blocks of them (then the final norm and head stay frozen);
    # None: whole layers, the final norm and an untied LM head (the embeddings never train)
    only: str | None = None


@dataclass(frozen=True)
class MemoryProfile:
    """What the memory planner (`harness plan`) needs of one candidate's training, answered by
    its backend so the planner never switches on backend names."""

    adapter: AdapterShape | None = None  # None: every weight trains
    quantized: bool = False  # a 4-bit (NF4) base
    # Row fields appended to the prompt, each a sequence of its own in a step (DPO: two)
    answer_fields: tuple[str, ...] = ("completion",)
    reference_copy: bool = False  # a frozen copy of the base is held (DPO/GRPO on all weights)
    generated_sequences: int = 0  # completions generated at once (GRPO); 0: it generates none
    completion_tokens: int = 0  # generated tokens per completion; then only these are scored
    frozen: FrozenLayers | None = None  # None: nothing frozen (beyond a base under an adapter)
    # Forwards without gradients over the micro-batch in each step, run one at a time while the
    # policy's saved activations are held (KTO: the reference on the completions and, for its KL
    # term, the policy and the reference on mismatched prompt/completion pairs); 0: none
    no_grad_forwards: int = 0
    # The trainer materialises (sequences, length, vocabulary) logits instead of trl's fused LM
    # head (ORPO: trl's experimental trainer computes its losses from the full logits)
    full_logits: bool = False


@dataclass(frozen=True)
class DataProblem:
    """What a backend's optional `data_problems(config, rows)` hook finds in a training set that
    `required_fields` cannot say (a value of the wrong kind, a set that cannot train): reported
    at validation time at the row's file:line (`row`: its index), or for the whole set (None)."""

    message: str
    row: int | None = None


BUILTIN_NAMES = (
    "full", "lora", "qlora", "dpo", "grpo", "orpo", "kto", "rft", "reward_model", "rloo",
    "pretrain",
    "prompt_tuning", "prefix_tuning", "ia3", "llama_adapter",  # backends/peft_methods.py
)  # fmt: skip


class Backend(Protocol):
    name: str
    Config: type[BaseModel]
    needs_reward: bool  # the suite must give `reward:` (GRPO)

    # A method, not a Callable attribute: a dataclass holding functions (the built-ins'
    # `TrainerBackend`) then satisfies the protocol for mypy.
    def required_fields(self, config: Any) -> set[str]:
        """Fields each training row must have (given the config), checked at validation time."""
        ...

    def problems(self, config: Any) -> list[str]:
        """Impossible combinations in `config`, in words; empty when it can train."""
        ...

    def trains_adapter(self, config: Any) -> bool:
        """Whether `config` trains an adapter that merges into a frozen base (then `merge:` is
        possible): LoRA and IA3 do; virtual tokens, prefixes and adaption prompts (an adapter
        all the same: `memory_profile(config).adapter`) are no change of the base's weights."""
        ...

    def memory_profile(self, config: Any) -> MemoryProfile:
        """What `harness plan` needs to estimate this training's peak memory."""
        ...

    def train(self, request: TrainRequest) -> TrainResult: ...

    # Optional attributes (validation asks `getattr(backend, name, None)`; None: no such check),
    # each run at `harness validate` time:
    # - data_problems(config, rows) -> list[DataProblem]: the training rows' values (KTO's labels).
    # - base_problems(config, base_config: dict) -> list[str]: the args against the base's
    #   config.json as a dict (a freezing schedule's layers, an architecture peft supports),
    #   reported at the candidate's `args:`. Called only when that config can be read without
    #   loading the base (a local directory, a `random:` preset, a `builtin:`; not a hub id), so
    #   `train` still checks the same things when it starts.


# The built-in backends: "module:attr" targets, loaded on first use exactly as a plugin's entry
# point (group `harness.backends`) is. Their heavy imports wait inside `train`.
BUILTIN_BACKENDS = {name: f"harness.backends.{name}:BACKEND" for name in BUILTIN_NAMES} | {
    # peft's methods beyond LoRA share one module
    "prompt_tuning": "harness.backends.peft_methods:PROMPT_TUNING",
    "prefix_tuning": "harness.backends.peft_methods:PREFIX_TUNING",
    "ia3": "harness.backends.peft_methods:IA3",
    "llama_adapter": "harness.backends.peft_methods:LLAMA_ADAPTER",
}
BACKENDS: Registry[Backend] = Registry(
    "backend",
    "harness.backends",
    BUILTIN_BACKENDS,
    required=(
        "name", "Config", "needs_reward", "required_fields", "problems", "trains_adapter",
        "memory_profile", "train",
    ),
)  # fmt: skip

__all__ = [
    "BACKENDS",
    "AdapterShape",
    "Backend",
    "Checkpoint",
    "CheckpointHook",
    "DataProblem",
    "FrozenLayers",
    "MemoryProfile",
    "TrainProgress",
    "TrainRequest",
    "TrainResult",
]
