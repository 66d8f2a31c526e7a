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
    """What an RL or rejection-sampling candidate is rewarded by: a generative check of this
    suite, a reward model trained by another candidate, or a Python function (opt-in)."""

    check: str | None = Field(None, description="A capability or check name of this suite")
    metric: str | None = Field(
        None, description="Which of the check's metrics (default: its first)"
    )
    model: str | None = Field(
        None, description="A `reward_model` candidate of this suite (trained first)"
    )
    python: str | None = Field(None, description="module:function(completions, rows) -> [float]")

    @model_validator(mode="after")
    def _one_source(self) -> RewardSpec:
        if sum(x is not None for x in (self.check, self.model, self.python)) != 1:
            raise ValueError("give exactly one of `check`, `model` or `python`")
        if self.metric is not None and self.check is None:
            raise ValueError("`metric` goes with `check`")
        return self


class Replay(Strict):
    """General data mixed into a candidate's training set, against forgetting."""

    data: str = Field(description="A data set of this suite, with the rows the backend needs")
    ratio: float = Field(
        gt=0, lt=1, description="The replayed rows' share of the training set (0.1: one in ten)"
    )


MergeMethod = Literal["linear", "task_arithmetic", "ties", "dare_linear", "dare_ties"]


class MergeOf(Strict):
    """A candidate built by merging trained candidates' weights (peft's merge utilities on the
    task vectors, each candidate's weights minus the base's)."""

    candidates: list[str] = Field(min_length=2, description="Trained candidates of this suite")
    method: MergeMethod = Field(
        "linear",
        description="linear: weighted mean of the models; task_arithmetic: base + weighted sum "
        "of task vectors; ties / dare_*: task vectors trimmed (density) before summing",
    )
    weights: list[float] | None = Field(
        None, description="One per candidate (default: equal, summing to 1)"
    )
    density: float = Field(
        0.5, gt=0, le=1, description="ties / dare: the share of each task vector kept"
    )

    @model_validator(mode="after")
    def _weights_per_candidate(self) -> MergeOf:
        if self.weights is not None and len(self.weights) != len(self.candidates):
            raise ValueError(f"{len(self.weights)} weights for {len(self.candidates)} candidates")
        if len(set(self.candidates)) != len(self.candidates):
            raise ValueError("a candidate is named twice")
        return self

    def resolved_weights(self) -> list[float]:
        return self.weights or [1.0 / len(self.candidates)] * len(self.candidates)


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


class Execution(Strict):
    """Where trained candidates train and every model is evaluated: in this process (`local`),
    or on a Ray cluster, each model a Ray actor placed by Ray (`ray`)."""

    engine: Literal["local", "ray"] = Field(
        "local",
        description="local: one model after another in the run's process; ray: every model at "
        "once on a Ray cluster (the `ray` extra)",
    )
    address: str | None = Field(
        None,
        description="The cluster: none starts a Ray instance on this machine for the run; auto "
        "joins the running one (`ray start --head`, RAY_ADDRESS); ray://HOST:10001 goes through "
        "Ray Client",
    )
    retries: int = Field(
        0, ge=0, le=100, description="Times Ray restarts a model whose worker died (preemption)"
    )
    cpus: float = Field(1, gt=0, description="CPUs each model's worker asks for (per process)")
    gpus: int | Literal["auto"] = Field(
        "auto",
        description="GPUs each model's worker asks for: auto = 1 (a launch's num_processes) when "
        "the cluster has GPUs, else 0",
    )
    artifacts: str | None = Field(
        None,
        description="A shared location every node reaches (a path on shared storage, or an "
        "fsspec URI such as s3://bucket/harness): trained artifacts are written there and any "
        "node reuses them",
    )
    runtime_env: dict[str, Any] | None = Field(
        None, description="Ray's runtime_env for the workers (working_dir, pip, env_vars)"
    )

    @model_validator(mode="after")
    def _ray_settings_need_ray(self) -> Execution:
        if self.engine == "local":
            given = [k for k in ("address", "artifacts", "runtime_env") if getattr(self, k)]
            if given:
                raise ValueError(f"{', '.join(given)}: only with engine: ray")
        return self


class Candidate(Strict):
    name: Name
    model: str | None = Field(None, description="An already trained model: evaluated only")
    backend: str | None = Field(None, description="A trainer backend that trains from the base")
    data: str | None = Field(None, description="The training data set (for `backend`)")
    args: dict[str, Any] = Field(default_factory=dict, description="The backend's settings")
    reward: RewardSpec | None = None
    replay: Replay | None = Field(None, description="Mix general data into the training set")
    merge: bool = Field(False, description="Also evaluate the adapter merged into the base")
    merge_of: MergeOf | None = Field(
        None, description="Build this candidate by merging trained candidates"
    )
    capabilities: list[str] | None = Field(
        None,
        description="Evaluate and gate this candidate on these capabilities only (default: "
        "all); a reward model, say, on its pairwise accuracy",
    )
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
        if sum(x is not None for x in (self.model, self.backend, self.merge_of)) != 1:
            raise ValueError(
                "give exactly one of `model` (already trained), `backend` (train it) or "
                "`merge_of` (merge trained candidates)"
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
    execution: Execution = Field(default_factory=Execution)
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
