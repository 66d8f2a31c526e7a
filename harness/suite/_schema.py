"""The suite file's schema: pydantic models, strict (unknown keys are errors) and frozen.

The check entries come from the check registry (each type's own `Params`), so `suite_model()`
builds the model on first use, with the check types (plugins included) registered then.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Annotated, Any, Literal, Union

from pydantic import Field, create_model, model_validator

from harness.checks import CHECKS, CheckSpec, CheckType
from harness.core.strict import Name, Strict

GateMode = Literal["confidence", "point"]


class GenerationConfig(Strict):
    """Greedy decoding settings shared by every generative check (each may override)."""

    max_new_tokens: int = Field(32, ge=1, le=32768)
    stop: list[str] = Field(default_factory=lambda: ["\n"])
    chat_template: bool = False
    system_prompt: str | None = None
    batch_size: int = Field(32, ge=1, le=4096)
    engine: Literal["auto", "transformers", "vllm"] = Field(
        "auto",
        description="Who generates: vllm, transformers, or auto (vLLM when it is installed, a "
        "CUDA device is visible and it can serve the model; else transformers)",
    )


class DataSource(Strict):
    path: str | None = None
    rows: list[dict[str, Any]] | None = None
    format: Literal["jsonl", "json", "csv", "tsv", "parquet"] | None = None
    columns: list[str] | None = Field(
        None, description="Column names of a csv/tsv file with no header line (GLUE's CoLA)"
    )
    dataset: str | None = Field(
        None, description="A `datasets` name (hub, when reachable) or a local dataset directory"
    )
    config: str | None = Field(None, description="The `datasets` configuration, e.g. sst2")
    split: str = Field("validation", description="The `datasets` split")

    @model_validator(mode="after")
    def _one_source(self) -> DataSource:
        if sum(x is not None for x in (self.path, self.rows, self.dataset)) != 1:
            raise ValueError(
                "give exactly one of `path` (a file), `rows` (inline rows) or `dataset` (datasets)"
            )
        return self


CONFIDENCE = Field(0.95, gt=0.5, lt=1, description="One-sided confidence of `mode: confidence`")


MODE_HELP = (
    "confidence: pass / fail / inconclusive on a one-sided bound; point: pass or fail on the "
    "measured value alone"
)


class ThresholdGate(Strict):
    """Fails when the value is below `min` (above `max`); passes when its one-sided bound at
    `confidence` is at least `min` (at most `max`); otherwise inconclusive."""

    metric: str
    min: float | None = None
    max: float | None = None  # for lower-is-better metrics such as perplexity
    mode: GateMode = Field("confidence", description=MODE_HELP)
    confidence: float = CONFIDENCE

    @model_validator(mode="after")
    def _one_bound(self) -> ThresholdGate:
        if (self.min is None) == (self.max is None):
            raise ValueError("give exactly one of `min` or `max`")
        return self


class ForgettingGate(Strict):
    """Fails when the measured drop from the base is beyond `max_drop`; passes when a paired
    test over the same cases bounds the drop within it at `confidence`; otherwise inconclusive."""

    metric: str
    max_drop: float = Field(ge=0)
    mode: GateMode = Field("confidence", description=MODE_HELP)
    confidence: float = CONFIDENCE


class ImproveGate(Strict):
    """Fails when the measured gain over the base is below `min_gain`; passes when the paired
    test's lower bound on the gain reaches it at `confidence`; otherwise inconclusive."""

    metric: str
    min_gain: float
    mode: GateMode = Field("confidence", description=MODE_HELP)
    confidence: float = CONFIDENCE


class CapabilityBase(Strict):
    name: Name
    description: str | None = None
    threshold: ThresholdGate | None = None
    forgetting: ForgettingGate | None = None
    improve: ImproveGate | None = None


class RewardSpec(Strict):
    """What GRPO rewards: a generative check of this suite, or a Python function (opt-in)."""

    check: str | None = Field(None, description="A capability or check name of this suite")
    metric: str | None = Field(
        None, description="Which of the check's metrics (default: its first)"
    )
    python: str | None = Field(None, description="module:function(completions, rows) -> [float]")

    @model_validator(mode="after")
    def _one_source(self) -> RewardSpec:
        if (self.check is None) == (self.python is None):
            raise ValueError("give exactly one of `check` or `python`")
        return self


class AccelerateLaunch(Strict):
    """Train one candidate on several devices through `accelerate launch` (DDP, or FSDP and
    DeepSpeed from an accelerate config file)."""

    num_processes: int = Field(2, ge=1, description="Processes, one per GPU")
    config_file: str | None = Field(
        None, description="An accelerate config file (FSDP, DeepSpeed), relative to the suite"
    )
    args: list[str] = Field(
        default_factory=list, description="More `accelerate launch` flags, passed as they are"
    )


class Checkpoints(Strict):
    """Evaluate a trained candidate while it trains: forgetting curves, the best checkpoint that
    passes, an early stop before it forgets."""

    every: int = Field(ge=1, description="Evaluate every N optimizer steps (and at the last)")
    capabilities: list[str] | None = Field(
        None, description="Only these capabilities at checkpoints (default: all), to keep it cheap"
    )
    select: Literal["last", "best-passing"] = Field(
        "last",
        description="last: the final weights; best-passing: the checkpoint that passes every "
        "gate evaluated, best on the improve metric (ties: the earlier step)",
    )
    stop_on: Literal["forgetting"] | None = Field(
        None,
        description="forgetting: stop once a forgetting gate fails on two checkpoints in a row",
    )

    def key(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class TrainingSchedule(Strict):
    """How trained candidates share the machine."""

    parallel: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto",
        description="Candidates trained at once: auto = one per visible GPU (1 without a GPU)",
    )


class Candidate(Strict):
    name: Name
    model: str | None = Field(None, description="An already trained model: evaluated only")
    backend: str | None = Field(None, description="A trainer backend that trains from the base")
    data: str | None = Field(None, description="The training data set (for `backend`)")
    args: dict[str, Any] = Field(default_factory=dict, description="The backend's settings")
    reward: RewardSpec | None = None
    merge: bool = Field(False, description="Also evaluate the adapter merged into the base")
    quantize: Literal["int8", "nf4"] | None = Field(
        None,
        description="Evaluate `model` loaded quantized by bitsandbytes: did quantizing break a "
        "capability?",
    )
    accelerate: AccelerateLaunch | None = Field(
        None, description="Train on several GPUs through `accelerate launch`"
    )
    checkpoints: Checkpoints | None = Field(
        None, description="Evaluate at checkpoints while training (forgetting curves, selection)"
    )

    @model_validator(mode="after")
    def _model_or_backend(self) -> Candidate:
        if (self.model is None) == (self.backend is None):
            raise ValueError(
                "give exactly one of `model` (already trained) or `backend` (train it)"
            )
        if self.quantize is not None and self.backend is not None:
            raise ValueError(
                "quantize applies to a `model:` candidate (to train on a 4-bit base, use "
                "backend: qlora)"
            )
        return self


class SuiteBase(Strict):
    name: Name
    description: str | None = None
    base: str = Field(
        description="Model reference: hub id, directory, builtin:<name>, random:<preset>"
    )
    trust_remote_code: bool = False
    allow_python: bool = Field(
        False, description="Allow suite-named Python code (GRPO rewards, `python` checks)"
    )
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seeds bootstrap intervals and sampling")
    joint_gates: bool = Field(
        False,
        description="A candidate's passes must hold jointly: Holm's adjustment over its gates",
    )
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    data: dict[Name, DataSource] = Field(default_factory=dict)
    training: TrainingSchedule = Field(default_factory=TrainingSchedule)
    candidates: list[Candidate] = Field(default_factory=list)
    # Replaced by `suite_model` with capabilities whose checks are the registered types; typed
    # here as what every consumer reads of them (name, description, gates).
    capabilities: list[CapabilityBase] = Field(default_factory=list)


def check_entry_model(check: CheckType[Any]) -> type[CheckSpec]:
    """The check's Params with its `type` tag, as it appears in a suite."""
    tag: Any = Literal[check.name]  # a type built at run time from the registered name
    return create_model(
        f"{check.name.title().replace('_', '')}Check", __base__=check.params, type=(tag, ...)
    )


def suite_model(types: frozenset[str] | None = None) -> type[SuiteBase]:
    """The Suite model, with every check type registered now (plugins included), or only
    `types` (all of them registered names): a suite validates against the types it uses, so
    loading it imports and builds only those (a sixth of the time for three of sixteen)."""
    if types is not None and not types <= set(CHECKS.names()):
        types = None  # an unknown type: the full model says which ones exist
    return _suite_model(None if types is None else tuple(sorted(types)))


@cache
def _suite_model(types: tuple[str, ...] | None) -> type[SuiteBase]:
    checks = [CHECKS.get(name) for name in types] if types else [c for _, c in CHECKS.items()]
    entries = tuple(check_entry_model(check) for check in checks)
    entry_union: Any = Annotated[Union[entries], Field(discriminator="type")]  # noqa: UP007
    capability = create_model(
        "Capability", __base__=CapabilityBase, checks=(list[entry_union], Field(min_length=1))
    )
    capabilities: Any = list[capability]  # type: ignore[valid-type]  # a class built at run time
    return create_model(
        "Suite", __base__=SuiteBase, capabilities=(capabilities, Field(min_length=1))
    )


def json_schema() -> dict[str, Any]:
    return suite_model().model_json_schema()


def dump_schema() -> str:
    return json.dumps(json_schema(), indent=2)
