"""Freezing schedules for the `full` backend (`freeze:`): only the top decoder layers train, only
their attention or MLP blocks, or layer groups unfrozen one after another, going down.

What trains: the decoder layers the schedule names (all of each layer, or with `only` its
attention or MLP block), and with them, unless `only` is given, the final norm and an untied LM
head. The input embeddings never train: they feed the frozen bottom layers, so moving them would
change what every frozen layer sees. A tied LM head is the input embedding matrix, so it stays
frozen too (the tiny Llama and most small models tie them).

How, in transformers' Trainer (5.x): the optimizer is built inside `train()`, from the parameters
that have `requires_grad` then, and `on_train_begin` runs after it is built (in
`_inner_training_loop`, after `_prepare_for_training`). A static schedule sets `requires_grad`
before `train()`, so the optimizer never holds a frozen weight (no states for it). A gradual one
needs the optimizer to hold every weight that will ever train, so those keep `requires_grad` until
the optimizer exists; the callback then freezes the later groups in `on_train_begin` and unfreezes
each at the `on_step_begin` of its step. torch's optimizers skip a parameter whose grad is None (no
update, no weight decay, no state until its first gradient), so a group waiting its turn stays
bit-identical. The callback's parameters are the model's own objects, so this holds for one
process only: data-parallel wrappers register their gradient hooks when they wrap the model, and
gradual unfreezing under `accelerate launch` is refused when it starts.

Heavy imports (torch, transformers) wait inside functions.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from harness.backends import FrozenLayers, TrainRequest, TrainResult
from harness.backends.common import plan_acceleration, sft_trainer, train_with
from harness.core.device import pick_device
from harness.core.errors import HarnessError
from harness.core.strict import Strict

if TYPE_CHECKING:
    from transformers import TrainerCallback

Block = Literal["attention", "mlp"]
# A decoder layer's attention and MLP submodules, by the names transformers' architectures use.
BLOCK_NAMES: dict[str, tuple[str, ...]] = {
    "attention": ("self_attn", "attn", "attention", "self_attention"),
    "mlp": ("mlp", "feed_forward", "ffn"),
}


class FreezeError(HarnessError):
    """A freezing schedule this base cannot follow (found when training starts)."""


class FreezeArgs(Strict):
    """Which weights train (`freeze:` on the full backend); the rest keep the base's values."""

    train_last_layers: int | None = Field(
        None,
        ge=1,
        description="Only the last N decoder layers train (default: all). The final norm and an "
        "untied LM head train with them; the input embeddings, and a head tied to them, stay "
        "frozen",
    )
    only: Block | None = Field(
        None,
        description="Only the attention or only the MLP blocks of the trained layers train "
        "(then the final norm and the LM head stay frozen too)",
    )
    unfreeze_every: int | None = Field(
        None,
        ge=1,
        description="Gradual unfreezing: the top layer group trains from the start, and one "
        "more group below it joins every K optimizer steps",
    )
    group_size: int = Field(
        1, ge=1, description="Decoder layers per group for unfreeze_every (default 1)"
    )

    @model_validator(mode="after")
    def _a_schedule(self) -> FreezeArgs:
        if self.train_last_layers is None and self.only is None and self.unfreeze_every is None:
            raise ValueError("give train_last_layers, only or unfreeze_every")
        if "group_size" in self.model_fields_set and self.unfreeze_every is None:
            raise ValueError("group_size applies to gradual unfreezing: give unfreeze_every too")
        n = self.train_last_layers
        if self.unfreeze_every is not None and n is not None and self.group_size >= n:
            raise ValueError(
                f"group_size {self.group_size} puts all {n} trained layers (train_last_layers) "
                "in one group: nothing is left to unfreeze; lower group_size or drop unfreeze_every"
            )
        return self


def freeze_problems(config: Any) -> list[str]:
    """A freezing schedule with the rest of the full backend's config (validate time)."""
    freeze: FreezeArgs | None = getattr(config, "freeze", None)
    if freeze is None:
        return []
    if getattr(config, "task", "causal_lm") == "classification":
        return [
            "freeze applies to task: causal_lm (SFT); freezing a classifier's layers is not "
            "supported"
        ]
    every, steps = freeze.unfreeze_every, known_steps(config)
    if every is not None and steps is not None and every >= steps:
        return [
            f"freeze: unfreeze_every {every} >= max_steps {steps}: only the top group would "
            "ever train; use train_last_layers instead"
        ]
    return []


def freeze_base_problems(config: Any, base_config: Mapping[str, Any]) -> list[str]:
    """A freezing schedule against the base's config.json (validate time, when the base's
    config can be read without loading it): the layers it names must exist."""
    freeze: FreezeArgs | None = getattr(config, "freeze", None)
    if freeze is None or getattr(config, "task", "causal_lm") == "classification":
        return []  # nothing frozen, or refused by freeze_problems
    layers = config_layer_count(base_config)
    if layers is None:
        return [f"freeze: {NO_LAYER_COUNT}, which the schedule counts its top layers from"]
    return schedule_problems(freeze, layers)


def known_steps(config: Any) -> int | None:
    """The optimizer steps of the run, when the config says (not with num_train_epochs)."""
    return config.max_steps if config.num_train_epochs is None else None


def frozen_layers(config: Any) -> FrozenLayers | None:
    """What `harness plan` needs: the top layers that ever train (a gradual schedule of known
    length unfreezes only the groups whose turn comes before the last step) and `only`."""
    freeze: FreezeArgs | None = getattr(config, "freeze", None)
    if freeze is None:
        return None
    layers = freeze.train_last_layers
    every, steps = freeze.unfreeze_every, known_steps(config)
    if every is not None and steps is not None:
        reached = math.ceil(steps / every) * freeze.group_size
        layers = reached if layers is None else min(layers, reached)
    return FrozenLayers(trained_layers=layers, only=freeze.only)


# ---- the schedule, from the base's number of layers ------------------------------------------


@dataclass(frozen=True)
class LayerGroup:
    """Decoder layers (0 is the bottom) that start training together, after `start` steps."""

    layers: tuple[int, ...]
    start: int


@dataclass(frozen=True)
class Schedule:
    num_layers: int  # the base's decoder layers
    groups: tuple[LayerGroup, ...]  # the top group first
    only: Block | None
    gradual: bool


NO_LAYER_COUNT = "the base's config.json names no num_hidden_layers (nor n_layer)"


def config_layer_count(config: Mapping[str, Any]) -> int | None:
    """A config's decoder layers (a multimodal config's text model's): num_hidden_layers, or
    GPT-2's n_layer; None when it names neither."""
    text = config.get("text_config") or config
    count = text.get("num_hidden_layers", text.get("n_layer"))
    return count if isinstance(count, int) else None


def base_layer_count(base_dir: Path) -> int:
    """The decoder layers of the base's config.json (a multimodal config's text model's)."""
    try:
        config = json.loads((base_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise FreezeError(f"freeze: cannot read the base's config.json ({error})") from error
    count = config_layer_count(config)
    if count is None:
        raise FreezeError(f"freeze: {NO_LAYER_COUNT} ({base_dir})")
    return count


def schedule_problems(freeze: FreezeArgs, num_layers: int) -> list[str]:
    """What a base of `num_layers` decoder layers cannot follow of `freeze` (found at validation
    by `freeze_base_problems`, and again when training starts)."""
    n = freeze.train_last_layers or num_layers
    if n > num_layers:
        return [
            f"freeze: train_last_layers {n}, but the base has {num_layers} decoder layers; "
            f"give at most {num_layers}"
        ]
    if freeze.unfreeze_every is not None and freeze.group_size >= n:
        return [
            f"freeze: group_size {freeze.group_size} covers all {n} trained layers of the base: "
            "nothing is left to unfreeze; lower group_size"
        ]
    return []


def layer_schedule(freeze: FreezeArgs, num_layers: int) -> Schedule:
    """The groups of trained layers, top first, and the step each starts training at."""
    if found := schedule_problems(freeze, num_layers):
        raise FreezeError(found[0])
    n = freeze.train_last_layers or num_layers
    top_down = list(range(num_layers - 1, num_layers - n - 1, -1))
    every = freeze.unfreeze_every
    size = freeze.group_size if every is not None else n
    chunks = [tuple(sorted(top_down[i : i + size])) for i in range(0, n, size)]
    groups = tuple(LayerGroup(layers, i * (every or 0)) for i, layers in enumerate(chunks))
    return Schedule(num_layers, groups, freeze.only, every is not None)


# ---- the model's parameters ------------------------------------------------------------------


@dataclass(frozen=True)
class TrainedParts:
    """The parameters each group trains (the top group's include the final norm and an untied
    head), by their names in `model.named_parameters()` (a tied weight under its first name)."""

    groups: tuple[dict[str, Any], ...]
    tied_head: bool
    total: int


def trained_parts(model: Any, schedule: Schedule) -> TrainedParts:
    layers_name, layers = decoder_layers(model, schedule.num_layers)
    names = {id(p): n for n, p in model.named_parameters()}
    groups: list[dict[str, Any]] = []
    for group in schedule.groups:
        modules = [trained_block(layers[i], schedule.only, i) for i in group.layers]
        groups.append({names[id(p)]: p for m in modules for p in m.parameters()})
    top, tied = top_parameters(model, layers_name)
    if schedule.only is None:
        groups[0].update({names[id(p)]: p for p in top})
    total = sum(p.numel() for p in model.parameters())
    return TrainedParts(tuple(groups), tied, total)


def decoder_layers(model: Any, num_layers: int) -> tuple[str, Any]:
    """The ModuleList of the decoder layers (the first list of `num_layers` modules)."""
    from torch import nn

    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == num_layers:
            return name, module
    raise FreezeError(
        f"freeze: no list of {num_layers} decoder layers in {type(model).__name__}; "
        "this architecture cannot be frozen by layer"
    )


def trained_block(layer: Any, only: Block | None, index: int) -> Any:
    """A decoder layer, or its attention or MLP submodule."""
    if only is None:
        return layer
    for name in BLOCK_NAMES[only]:
        child = getattr(layer, name, None)
        if child is not None and hasattr(child, "parameters"):
            return child
    children = ", ".join(name for name, _ in layer.named_children())
    raise FreezeError(
        f"freeze: only: {only}, but decoder layer {index} ({type(layer).__name__}) has no "
        f"{' / '.join(BLOCK_NAMES[only])} submodule (it has: {children})"
    )


def top_parameters(model: Any, layers_name: str) -> tuple[list[Any], bool]:
    """The final norm (the norms beside the layer list) and an untied LM head; and whether the
    head is tied to the input embeddings (then it stays frozen with them)."""
    parent = model.get_submodule(layers_name.rpartition(".")[0])
    norms = [m for _, m in parent.named_children() if "norm" in type(m).__name__.lower()]
    found = [p for m in norms for p in m.parameters()]
    head = model.get_output_embeddings()
    embeddings = model.get_input_embeddings()
    tied = head is not None and head.weight is embeddings.weight
    if head is not None and not tied:
        found += list(head.parameters())
    return found, tied


# ---- applying it -----------------------------------------------------------------------------


@dataclass
class Freezer:
    """Sets which weights train before the optimizer exists, and (gradual) unfreezes the
    waiting groups at their steps; records when each group really started."""

    schedule: Schedule
    parts: TrainedParts | None = None
    started: dict[int, int] = field(default_factory=dict)  # group -> steps done before it trained

    def attach(self, model: Any) -> None:
        """Call before `trainer.train()`: everything off the schedule is frozen for good; every
        scheduled group trains (a gradual schedule freezes the waiting ones in on_train_begin)."""
        self.parts = trained_parts(model, self.schedule)
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        for group in self.parts.groups:
            set_trainable(group.values(), True)

    def callback(self) -> TrainerCallback:
        from transformers import TrainerCallback

        freezer = self

        class Unfreezing(TrainerCallback):  # type: ignore[misc]
            def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                freezer.begin(args.world_size)

            def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                freezer.unfreeze_due(state.global_step)

        return Unfreezing()

    def begin(self, world_size: int) -> None:
        """The optimizer holds every scheduled weight now: the groups not yet due stop here."""
        if self.schedule.gradual and world_size > 1:
            raise FreezeError(
                "freeze: unfreeze_every changes which weights train during the run, which "
                f"data-parallel training over {world_size} processes does not follow; train on "
                "one process or use train_last_layers"
            )
        for index, group in enumerate(self.schedule.groups):
            if group.start > 0:
                set_trainable(self.group(index).values(), False)
        self.unfreeze_due(0)

    def unfreeze_due(self, steps_done: int) -> None:
        for index, group in enumerate(self.schedule.groups):
            if index not in self.started and group.start <= steps_done:
                set_trainable(self.group(index).values(), True)
                self.started[index] = steps_done

    def group(self, index: int) -> dict[str, Any]:
        assert self.parts is not None, "attach() the model first"
        return self.parts.groups[index]

    def record(self, result: TrainResult) -> TrainResult:
        """The result with the parameters that trained at any point, and the schedule as run."""
        assert self.parts is not None, "attach() the model first"
        trained = sum(
            p.numel() for index in self.started for p in self.parts.groups[index].values()
        )
        return replace(
            result,
            trainable_parameters=trained,
            total_parameters=self.parts.total,
            details={**result.details, "freeze": self.details()},
        )

    def details(self) -> dict[str, Any]:
        assert self.parts is not None, "attach() the model first"
        groups = [
            {
                "layers": list(group.layers),
                "from_step": self.started.get(index),  # None: its turn never came
                "parameters": sum(p.numel() for p in self.parts.groups[index].values()),
            }
            for index, group in enumerate(self.schedule.groups)
        ]
        top = "frozen (only: " + self.schedule.only + ")" if self.schedule.only else "trained"
        head = "tied to the embeddings: frozen" if self.parts.tied_head else top
        return {
            "decoder_layers": self.schedule.num_layers,
            "only": self.schedule.only,
            "final_norm": top,
            "lm_head": head,
            "embeddings": "frozen",
            "groups": groups,
        }


def set_trainable(parameters: Iterable[Any], trainable: bool) -> None:
    for parameter in parameters:
        parameter.requires_grad_(trainable)


def train_frozen(request: TrainRequest, config: Any) -> TrainResult:
    """Supervised fine-tuning of all weights (the full backend) under `config.freeze`."""
    schedule = layer_schedule(config.freeze, base_layer_count(request.base_dir))
    freezer = Freezer(schedule)
    plan = plan_acceleration(config, request, pick_device())

    def make_trainer(callbacks: list[Any]) -> Any:
        callbacks = [*callbacks, freezer.callback()]
        trainer = sft_trainer(request, config, None, False, callbacks, plan)
        freezer.attach(trainer.model)  # train() builds the optimizer: it sees only these
        return trainer

    return freezer.record(train_with(make_trainer, request, plan))
