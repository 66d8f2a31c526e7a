"""The suite file: its pydantic schema, loading with `FILE:LINE:COL` errors, and resolution.

`load_suite` validates everything that can be known before a model loads (keys, types, check
parameters, data files and their rows, gate metrics, model references) and reports every problem
at once as a HarnessError, so `harness run` never starts on a broken suite.
"""

from __future__ import annotations

import hashlib
import json
import re
import typing
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field, ValidationError, create_model, model_validator

from harness.checks import CHECKS, Case, CheckSpec, CheckType
from harness.core.errors import HarnessError
from harness.core.registry import did_you_mean
from harness.core.strict import Name, Strict
from harness.suite._data import FORMATS, DataError, Row, read_dataset, read_rows
from harness.suite._source import PathKey, YamlDocument, load_yaml


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


GateMode = Literal["confidence", "point"]
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
    accelerate: AccelerateLaunch | None = Field(
        None, description="Train on several GPUs through `accelerate launch`"
    )

    @model_validator(mode="after")
    def _model_or_backend(self) -> Candidate:
        if (self.model is None) == (self.backend is None):
            raise ValueError(
                "give exactly one of `model` (already trained) or `backend` (train it)"
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


def check_entry_model(check: CheckType[Any]) -> type[CheckSpec]:
    """The check's Params with its `type` tag, as it appears in a suite."""
    tag: Any = Literal[check.name]  # a type built at run time from the registered name
    return create_model(
        f"{check.name.title().replace('_', '')}Check", __base__=check.params, type=(tag, ...)
    )


@cache
def suite_model() -> type[SuiteBase]:
    """The Suite model, built from the check types registered now (plugins included)."""
    entries = tuple(check_entry_model(check) for _, check in CHECKS.items())
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


# --- Loaded and resolved suite -------------------------------------------------------------


@dataclass(frozen=True)
class PlannedCheck:
    capability: str
    label: str
    check: CheckType[Any]
    spec: CheckSpec
    cases: tuple[Case, ...]


@dataclass(frozen=True)
class LoadedSuite:
    path: Path
    text: str
    hash: str  # the suite text and every data file it reads
    spec: Any  # an instance of suite_model()
    checks: tuple[PlannedCheck, ...]
    models: dict[str, str]  # "base" and each evaluated candidate -> resolved model reference
    trainings: dict[str, Any] = field(default_factory=dict)  # name -> training_plan.PlannedTraining

    @property
    def name(self) -> str:
        return str(self.spec.name)


class Problems:
    """Every problem found in a suite, each at its `FILE:LINE:COL`."""

    def __init__(self, doc: YamlDocument) -> None:
        self.doc = doc
        self.items: list[tuple[int, int, str]] = []

    def add(self, path: PathKey, message: str, *, key: bool = False) -> None:
        where = self.doc.position(path, key=key)
        field = _dotted(path)
        prefix = f"{field}: " if field else ""
        self.items.append((where.line, where.column, f"{prefix}{message}"))

    def raise_if_any(self) -> None:
        if self.items:
            ordered = sorted(self.items, key=lambda item: (item[0], item[1], _natural(item[2])))
            lines = [f"{self.doc.path}:{line}:{col}: {msg}" for line, col, msg in ordered]
            count = len(lines)
            raise HarnessError(
                f"{self.doc.path}: {count} problem{'s' if count > 1 else ''} in the suite",
                problems=lines,
            )


def _natural(text: str) -> list[Any]:
    """A sort key that orders `file:10` after `file:9`."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _dotted(path: PathKey) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def load_suite(
    path: str | Path, *, base_override: str | None = None, resolve_models: bool = True
) -> LoadedSuite:
    """Parse, validate and resolve a suite; HarnessError listing every problem otherwise.

    `resolve_models=False` skips checking model references (`harness gate` decides from stored
    results, so the models may be long gone); `models` then holds them as written.
    """
    doc = load_yaml(Path(path))
    problems = Problems(doc)
    if not isinstance(doc.data, dict):
        problems.add(
            (), "a suite must be a mapping with at least `name`, `base` and `capabilities`"
        )
        problems.raise_if_any()
    try:
        spec = suite_model().model_validate(doc.data)
    except ValidationError as exc:
        for location, message, key in _pydantic_problems(doc.data, exc):
            problems.add(location, message, key=key)
        problems.raise_if_any()
        raise  # unreachable: a ValidationError always has at least one error
    return _resolve(doc, spec, problems, base_override, resolve_models)


# --- Mapping pydantic errors to suite positions --------------------------------------------


def _pydantic_problems(
    data: Any, exc: ValidationError, model: type[BaseModel] | None = None
) -> list[tuple[PathKey, str, bool]]:
    """(path in `data`, message, points at a key) for each error of validating `data`."""
    found = []
    for error in exc.errors():
        path = _data_path(data, error["loc"])
        found.append(_describe(error, path, model or suite_model()))
    return found


def _data_path(data: Any, loc: tuple[Any, ...]) -> PathKey:
    """pydantic's location minus union tags, which are not written in the file."""
    path: list[str | int] = []
    node = data
    for part in loc:
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and part < len(node)
        ):
            node = node[part]
        elif isinstance(node, dict | list):
            if isinstance(part, str) and _is_tag(node, part):
                continue
            path.append(part)
            break
        path.append(part)
    return tuple(path)


def _is_tag(node: Any, part: str) -> bool:
    return isinstance(node, dict) and node.get("type") == part


def _describe(error: Any, path: PathKey, model: type[BaseModel]) -> tuple[PathKey, str, bool]:
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, error["loc"][:-1])
        return path, f'unknown key "{path[-1]}"{did_you_mean(str(path[-1]), allowed)}', True
    if kind == "missing":
        return path, "required but missing", False
    if kind == "union_tag_invalid":
        tag = str(error["ctx"]["tag"])
        message = f'unknown check type "{tag}"{did_you_mean(tag, CHECKS.names())}; known: {", ".join(CHECKS.names())}'
        return (*path, "type"), message, False
    if kind == "union_tag_not_found":
        return path, f"a check needs a `type` (one of: {', '.join(CHECKS.names())})", False
    message = error["msg"].removeprefix("Value error, ")
    if kind not in {"value_error", "assertion_error"} and "input" in error:
        message += f" (got {error['input']!r})"
    return path, message, False


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model found at `loc`, for did-you-mean on unknown keys."""
    current: Any = model
    for part in loc:
        current = _step(current, part)
        if current is None:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or name for name, f in current.model_fields.items()]
    return []


def _unwrap(annotation: Any) -> Any:
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (Union, __import__("types").UnionType) and len(args) == 1:
        return _unwrap(args[0])
    return annotation


def _step(annotation: Any, part: Any) -> Any:
    annotation = _unwrap(annotation)
    origin = typing.get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(part)
        return field.annotation if field else None
    if origin is list and isinstance(part, int):
        return typing.get_args(annotation)[0]
    if origin is dict:
        return typing.get_args(annotation)[1]
    for member in typing.get_args(annotation):  # a tagged union: `part` is the tag
        type_field = getattr(member, "model_fields", {}).get("type")
        if type_field is not None and typing.get_args(type_field.annotation) == (part,):
            return member
    return None


# --- Checks that need the whole suite --------------------------------------------------------


def _resolve(
    doc: YamlDocument,
    spec: Any,
    problems: Problems,
    base_override: str | None,
    resolve_models: bool = True,
) -> LoadedSuite:
    suite_dir = doc.path.parent
    datasets = _load_datasets(doc, spec, problems)
    checks = _plan_checks(doc, spec, datasets, problems)
    _check_gates(spec, checks, problems)
    _check_candidates(spec, datasets, problems)
    from harness.suite._trainings import plan_trainings  # it builds on this module's types

    trainings = plan_trainings(spec, datasets, checks, problems)
    if resolve_models:  # models will run: what they need must be installed
        _check_engines(spec, problems)
        _check_entries(spec, doc.path.parent, problems)
        models = _resolve_models(spec, suite_dir, problems, base_override)
    else:
        models = {"base": spec.base} | {c.name: c.model for c in spec.candidates if c.model}
    problems.raise_if_any()
    suite_hash = _suite_hash(doc, spec)
    return LoadedSuite(doc.path, doc.text, suite_hash, spec, tuple(checks), models, trainings)


def _load_datasets(doc: YamlDocument, spec: Any, problems: Problems) -> dict[str, list[Row]]:
    datasets: dict[str, list[Row]] = {}
    for name, source in spec.data.items():
        if source.rows is not None:
            datasets[name] = [
                Row(row, f"{doc.path}:{doc.position(('data', name, 'rows', i)).line}")
                for i, row in enumerate(source.rows)
            ]
            continue
        try:
            if source.dataset is not None:
                datasets[name] = read_dataset(
                    _dataset_name(source.dataset, doc.path.parent), source.config, source.split
                )
            else:
                datasets[name] = read_rows(
                    doc.path.parent / source.path, source.format, source.columns
                )
        except DataError as exc:
            problems.add(("data", name, "dataset" if source.dataset else "path"), str(exc))
    return datasets


def _dataset_name(name: str, suite_dir: Path) -> str:
    """A local dataset directory is relative to the suite; anything else is a hub name."""
    local = suite_dir / name
    return str(local) if local.is_dir() else name


def _plan_checks(
    doc: YamlDocument, spec: Any, datasets: dict[str, list[Row]], problems: Problems
) -> list[PlannedCheck]:
    planned = []
    names = [c.name for c in spec.capabilities]
    for ci, capability in enumerate(spec.capabilities):
        if names.count(capability.name) > 1:
            problems.add(
                ("capabilities", ci, "name"), f'capability "{capability.name}" is defined twice'
            )
        for ki, entry in enumerate(capability.checks):
            where: PathKey = ("capabilities", ci, "checks", ki)
            check = CHECKS.get(entry.type).planned(entry, doc.path.parent)
            if check.opt_in and not getattr(spec, check.opt_in, False):
                problems.add(
                    (*where, "type"),
                    f"a `{check.name}` check runs code named by the suite: set `{check.opt_in}: true` at the top of the suite to allow it",
                )
            if entry.samples > 1 and check.score is None:
                problems.add(
                    (*where, "samples"),
                    f"`samples` needs a check that generates text; `{check.name}` does not",
                )
            # A check that reads its own cases (lm_eval) has no data rows to plan.
            rows = [] if check.own_cases else _rows_for(doc, entry, datasets, where, problems)
            if not check.own_cases and not rows and _source_found(entry, datasets):
                source = "its `cases`" if entry.cases is not None else f'data set "{entry.data}"'
                problems.add(
                    (*where, "cases" if entry.cases is not None else "data"),
                    f"{source} has no rows: a check with no cases measures nothing",
                )
            cases = _cases(check, entry, rows, where, problems)
            planned.append(PlannedCheck(capability.name, entry.label, check, entry, tuple(cases)))
    return planned


def _source_found(entry: Any, datasets: dict[str, list[Row]]) -> bool:
    """The entry's rows were read (a missing data set is reported on its own)."""
    return entry.cases is not None or entry.data in datasets


def _rows_for(
    doc: YamlDocument,
    entry: Any,
    datasets: dict[str, list[Row]],
    where: PathKey,
    problems: Problems,
) -> list[Row]:
    if entry.cases is not None:
        return [
            Row(row, f"{doc.path}:{doc.position((*where, 'cases', i)).line}")
            for i, row in enumerate(entry.cases)
        ]
    if entry.data not in datasets:
        declared = list(doc.data.get("data") or {})
        if entry.data not in declared:  # a declared set whose file failed was reported already
            known = declared
            problems.add(
                (*where, "data"),
                f'no data set "{entry.data}"{did_you_mean(entry.data, known)}; defined: {", ".join(known) or "none"}',
            )
        return []
    return datasets[entry.data]


def _cases(
    check: CheckType[Any], entry: Any, rows: list[Row], where: PathKey, problems: Problems
) -> list[Case]:
    needed = check.fields_needed(entry)
    cases = []
    lacking: dict[tuple[str, ...], list[Row]] = {}
    for index, row in enumerate(rows):
        missing = tuple(sorted(needed - set(row.fields)))
        if missing:
            lacking.setdefault(missing, []).append(row)
            continue
        case = Case(
            str(row.fields.get("id", f"{index + 1}")),
            _prompt(check, entry, row),
            row.fields,
            row.source,
        )
        try:
            check.validate_case(case, entry)
        except ValueError as exc:
            problems.add(where, f"{row.source}: {exc}")
            continue
        cases.append(case)
    for missing, bad_rows in lacking.items():
        problems.add(where, _missing_fields_message(missing, bad_rows))
    if len({c.id for c in cases}) < len(cases):
        problems.add(where, "case ids repeat; give each row a unique `id`")
    return cases


def _missing_fields_message(missing: tuple[str, ...], rows: list[Row]) -> str:
    """One line for every row lacking the same fields: how many, where, and what they have."""
    names = ", ".join(map(repr, missing))
    shown = ", ".join(r.source for r in rows[:3]) + (" …" if len(rows) > 3 else "")
    have = sorted({f for r in rows for f in r.fields})
    hints = "".join(did_you_mean(m, have).replace(" (did", f" ({m!r}: did") for m in missing)
    count = "1 row lacks" if len(rows) == 1 else f"{len(rows)} rows lack"
    return (
        f"{count} {names} ({shown}); they have {', '.join(map(repr, have)) or 'no fields'}{hints}"
    )


def _prompt(check: CheckType[Any], entry: Any, row: Row) -> str:
    return check.prompt_for(row.fields, entry)


def _check_gates(spec: Any, checks: list[PlannedCheck], problems: Problems) -> None:
    for ci, capability in enumerate(spec.capabilities):
        produced = produced_metrics(capability.name, checks)
        for kind in ("threshold", "forgetting", "improve"):
            gate = getattr(capability, kind)
            if gate is not None and gate.metric not in produced:
                problems.add(
                    ("capabilities", ci, kind, "metric"),
                    f'no check of this capability produces "{gate.metric}"{did_you_mean(gate.metric, sorted(produced))}; it has: {", ".join(sorted(produced))}',
                )


def produced_metrics(
    capability: str, checks: list[PlannedCheck] | tuple[PlannedCheck, ...]
) -> set[str]:
    return {
        f"{p.label}.{m}"
        for p in checks
        if p.capability == capability
        for m in p.check.metrics_for(p.spec)
    }


def _check_candidates(spec: Any, datasets: dict[str, list[Row]], problems: Problems) -> None:
    names = [c.name for c in spec.candidates]
    for i, candidate in enumerate(spec.candidates):
        where: PathKey = ("candidates", i)
        if candidate.name == "base" or names.count(candidate.name) > 1:
            problems.add(
                (*where, "name"),
                f'candidate name "{candidate.name}" is taken (unique, and not "base")',
            )
        trained_only = candidate.args or candidate.reward or candidate.merge or candidate.accelerate
        if candidate.model is not None and trained_only:
            problems.add(
                where,
                "`args`, `reward`, `merge` and `accelerate` belong to trained candidates (`backend:`)",
            )
        if candidate.data is not None and candidate.data not in datasets:
            problems.add(
                (*where, "data"),
                f'no data set "{candidate.data}"{did_you_mean(candidate.data, list(datasets))}',
            )


def _check_entries(spec: Any, suite_dir: Path, problems: Problems) -> None:
    """What each check can tell only by looking beyond the file (a judge's key variable, an
    lm-eval task's output type)."""
    for ci, capability in enumerate(spec.capabilities):
        for ki, entry in enumerate(capability.checks):
            for path, message in CHECKS.get(entry.type).problems(entry, suite_dir):
                problems.add(("capabilities", ci, "checks", ki, *path), message)


def _check_engines(spec: Any, problems: Problems) -> None:
    """`engine: vllm` (suite-wide or on a check) needs the vllm package, found without
    importing it; `auto` uses vLLM only where it is installed."""
    wanted: list[PathKey] = []
    if spec.generation.engine == "vllm":
        wanted.append(("generation", "engine"))
    for ci, capability in enumerate(spec.capabilities):
        for ki, entry in enumerate(capability.checks):
            if entry.generation is not None and entry.generation.engine == "vllm":
                wanted.append(("capabilities", ci, "checks", ki, "generation", "engine"))
    if not wanted:
        return
    from harness.generation._vllm import INSTALL_HINT, vllm_installed

    if not vllm_installed():
        for where in wanted:
            problems.add(
                where,
                f"engine vllm needs the vllm package, which is not installed ({INSTALL_HINT}); "
                "engine: auto uses vLLM only where it is installed",
            )


def resolve_reference(reference: str, suite_dir: Path) -> str:
    """A model reference with local paths made absolute (relative to the suite file).

    Built-in and preset names are checked here; a path-like reference must exist; anything else
    is taken as a hub id, which only loading can confirm.
    """
    kind, _, name = reference.partition(":")
    if kind in ("builtin", "random") and name:
        from harness.models.loading import known_builtins, known_presets

        known = known_builtins() if kind == "builtin" else known_presets()
        if name not in known:
            raise HarnessError(
                f'unknown {kind} model "{name}"{did_you_mean(name, known)}; known: {", ".join(known)}'
            )
        return reference
    local = Path(reference).expanduser()
    local = local if local.is_absolute() else suite_dir / local
    if local.exists():
        return str(local.resolve())
    if reference.startswith((".", "/", "~")) or reference.count("/") > 1:
        raise HarnessError(f"no model directory at {local.resolve()}")
    return reference


def _resolve_models(
    spec: Any, suite_dir: Path, problems: Problems, base_override: str | None
) -> dict[str, str]:
    refs: dict[str, tuple[PathKey, str]] = {"base": (("base",), base_override or spec.base)}
    for i, candidate in enumerate(spec.candidates):
        if candidate.model is not None:
            refs[candidate.name] = (("candidates", i, "model"), candidate.model)
    models = {}
    for name, (where, reference) in refs.items():
        try:
            # --base comes from the command line: relative to the working directory, not the suite.
            models[name] = resolve_reference(
                reference, Path.cwd() if where == ("base",) and base_override else suite_dir
            )
        except HarnessError as exc:
            if name == "base" and base_override:
                raise HarnessError(f"--base: {exc}") from exc
            problems.add(where, str(exc))
    return models


def _suite_hash(doc: YamlDocument, spec: Any) -> str:
    digest = hashlib.sha256(doc.text.encode())
    for name, source in sorted(spec.data.items()):
        if source.path is not None:
            digest.update(name.encode() + (doc.path.parent / source.path).read_bytes())
    return digest.hexdigest()


def dump_schema() -> str:
    return json.dumps(json_schema(), indent=2)


__all__ = ["FORMATS", "LoadedSuite", "PlannedCheck", "json_schema", "load_suite", "suite_model"]
