"""Loading a suite: parse, validate against the schema, resolve data, checks, trainings, models.

`load_suite` validates everything that can be known before a model loads (keys, types, check
parameters, data files and their rows, gate metrics, model references) and reports every problem
at once as a HarnessError, so `harness run` never starts on a broken suite.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness.checks import CHECKS, Case, CheckType
from harness.core.errors import HarnessError
from harness.core.registry import did_you_mean
from harness.generation import INSTALL_HINT, vllm_installed
from harness.models.gguf import check_gguf_file, is_gguf_reference
from harness.models.loading import check_reference, known_builtins, known_presets
from harness.suite._data import DataError, Row, read_dataset, read_rows
from harness.suite._execution import location_problem, ray_problem
from harness.suite._planned import LoadedSuite, PlannedCheck
from harness.suite._problems import Problems, pydantic_problems
from harness.suite._schema import SuiteBase, suite_model
from harness.suite._source import PathKey, YamlDocument, load_yaml
from harness.suite._trainings import check_capability_names, plan_trainings

# --- Loaded and resolved suite -------------------------------------------------------------


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
        spec = suite_model(check_types(doc.data)).model_validate(doc.data)
    except ValidationError as exc:
        model = suite_model(check_types(doc.data))
        for location, message, key in pydantic_problems(doc.data, exc, model):
            problems.add(location, message, key=key)
        problems.raise_if_any()
        raise  # unreachable: a ValidationError always has at least one error
    return _resolve(doc, spec, problems, base_override, resolve_models)


# --- Mapping pydantic errors to suite positions --------------------------------------------


# --- Checks that need the whole suite --------------------------------------------------------


def check_types(data: Any) -> frozenset[str] | None:
    """The check types a suite names (None when its shape is too broken to tell)."""
    try:
        return frozenset(
            str(entry["type"])
            for capability in data["capabilities"]
            for entry in capability["checks"]
        )
    except (KeyError, TypeError):
        return None


def _resolve(
    doc: YamlDocument,
    spec: SuiteBase,
    problems: Problems,
    base_override: str | None,
    resolve_models: bool = True,
) -> LoadedSuite:
    suite_dir = doc.path.parent
    datasets = _load_datasets(doc, spec, problems)
    checks = _plan_checks(doc, spec, datasets, problems)
    _check_gates(spec, checks, problems)
    _check_candidates(spec, datasets, problems)

    # Args are checked against the base trained from (--base: relative to the working directory)
    trainings = plan_trainings(
        spec, datasets, checks, problems,
        base=(base_override or spec.base) if resolve_models else None,
        relative_to=Path.cwd() if base_override else suite_dir,
    )  # fmt: skip
    if resolve_models:  # models will run: what they need must be installed
        _check_engines(spec, problems)
        check_execution(spec, problems)
        _check_entries(spec, doc.path.parent, problems)
        models = _resolve_models(spec, suite_dir, problems, base_override)
    else:
        models = {"base": spec.base} | {c.name: c.model for c in spec.candidates if c.model}
    problems.raise_if_any()
    suite_hash = _suite_hash(doc, spec)
    return LoadedSuite(doc.path, doc.text, suite_hash, spec, tuple(checks), models, trainings)


def _load_datasets(doc: YamlDocument, spec: SuiteBase, problems: Problems) -> dict[str, list[Row]]:
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
            else:  # DataSource validated that one of rows, dataset and path is given
                datasets[name] = read_rows(
                    doc.path.parent / str(source.path), source.format, source.columns
                )
        except DataError as exc:
            problems.add(("data", name, "dataset" if source.dataset else "path"), str(exc))
    return datasets


def _dataset_name(name: str, suite_dir: Path) -> str:
    """A local dataset directory is relative to the suite; anything else is a hub name."""
    local = suite_dir / name
    return str(local) if local.is_dir() else name


def _plan_checks(
    doc: YamlDocument, spec: SuiteBase, datasets: dict[str, list[Row]], problems: Problems
) -> list[PlannedCheck]:
    planned = []
    names = [c.name for c in spec.capabilities]
    for ci, capability in enumerate(_capabilities(spec)):
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


def _check_gates(spec: SuiteBase, checks: list[PlannedCheck], problems: Problems) -> None:
    for ci, capability in enumerate(_capabilities(spec)):
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


def _check_candidates(spec: SuiteBase, datasets: dict[str, list[Row]], problems: Problems) -> None:
    names = [c.name for c in spec.candidates]
    for i, candidate in enumerate(spec.candidates):
        where: PathKey = ("candidates", i)
        if candidate.name == "base" or names.count(candidate.name) > 1:
            problems.add(
                (*where, "name"),
                f'candidate name "{candidate.name}" is taken (unique, and not "base")',
            )
        trained_only = (
            candidate.args
            or candidate.reward
            or candidate.replay
            or candidate.merge
            or candidate.accelerate
            or candidate.checkpoints
            or candidate.data
        )
        if candidate.backend is None and trained_only:
            problems.add(
                where,
                "`data`, `args`, `reward`, `replay`, `merge`, `accelerate` and `checkpoints` "
                "belong to trained candidates (`backend:`)",
            )
        for path, data in (("data",), candidate.data), (("replay", "data"), _replayed(candidate)):
            if data is not None and data not in datasets:
                problems.add(
                    (*where, *path), f'no data set "{data}"{did_you_mean(data, list(datasets))}'
                )
        if candidate.merge_of is not None:
            _check_merge_of(spec, candidate.merge_of, (*where, "merge_of"), problems)
        check_capability_names(spec, candidate.capabilities, (*where, "capabilities"), problems)


def _replayed(candidate: Any) -> str | None:
    return candidate.replay.data if candidate.replay is not None else None


def _check_merge_of(spec: SuiteBase, merge_of: Any, where: PathKey, problems: Problems) -> None:
    """Merged candidates name trained candidates of this suite (not other merges)."""
    trained = [c.name for c in spec.candidates if c.backend is not None]
    for i, name in enumerate(merge_of.candidates):
        if name not in trained:
            problems.add(
                (*where, "candidates", i),
                f'no trained candidate "{name}"{did_you_mean(name, trained)}; merged candidates '
                "are built from candidates with `backend:`: " + (", ".join(trained) or "none"),
            )


def _check_entries(spec: SuiteBase, suite_dir: Path, problems: Problems) -> None:
    """What each check can tell only by looking beyond the file (a judge's key variable, an
    lm-eval task's output type)."""
    for ci, capability in enumerate(_capabilities(spec)):
        for ki, entry in enumerate(capability.checks):
            for path, message in CHECKS.get(entry.type).problems(entry, suite_dir):
                problems.add(("capabilities", ci, "checks", ki, *path), message)


def _check_engines(spec: SuiteBase, problems: Problems) -> None:
    """`engine: vllm` (suite-wide or on a check) needs the vllm package, found without
    importing it; `auto` uses vLLM only where it is installed."""
    wanted: list[PathKey] = []
    if spec.generation.engine == "vllm":
        wanted.append(("generation", "engine"))
    for ci, capability in enumerate(_capabilities(spec)):
        for ki, entry in enumerate(capability.checks):
            if entry.generation is not None and entry.generation.engine == "vllm":
                wanted.append(("capabilities", ci, "checks", ki, "generation", "engine"))
    if not wanted:
        return

    if not vllm_installed():
        for where in wanted:
            problems.add(
                where,
                f"engine vllm needs the vllm package, which is not installed ({INSTALL_HINT}); "
                "engine: auto uses vLLM only where it is installed",
            )


def check_execution(spec: SuiteBase, problems: Problems) -> None:
    """`engine: ray` needs the ray package, and a shared `artifacts:` URI the fsspec
    filesystem of its scheme (s3fs, gcsfs, ...), both found without importing them."""
    execution = spec.execution
    if execution.engine != "ray":
        return
    if (problem := ray_problem()) is not None:
        problems.add(("execution", "engine"), problem)
    if execution.artifacts is not None and (problem := location_problem(execution.artifacts)):
        problems.add(("execution", "artifacts"), problem)


def resolve_reference(reference: str, suite_dir: Path) -> str:
    """A model reference with local paths made absolute (relative to the suite file).

    Built-in and preset names are checked here; a path-like reference must exist; anything else
    is taken as a hub id, which only loading can confirm.
    """
    kind, _, name = reference.partition(":")
    if kind in ("builtin", "random") and name:
        known = known_builtins() if kind == "builtin" else known_presets()
        if name not in known:
            raise HarnessError(
                f'unknown {kind} model "{name}"{did_you_mean(name, known)}; known: {", ".join(known)}'
            )
        check_reference(reference)  # a packaged builtin: its package, and gguf, installed
        return reference
    local = Path(reference).expanduser()
    local = local if local.is_absolute() else suite_dir / local
    if is_gguf_reference(reference):
        check_gguf_file(local.resolve())
        return str(local.resolve())
    if local.exists():
        return str(local.resolve())
    if reference.startswith((".", "/", "~")) or reference.count("/") > 1:
        raise HarnessError(f"no model directory at {local.resolve()}")
    return reference


def _resolve_models(
    spec: SuiteBase, suite_dir: Path, problems: Problems, base_override: str | None
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


def _suite_hash(doc: YamlDocument, spec: SuiteBase) -> str:
    digest = hashlib.sha256(doc.text.encode())
    for name, source in sorted(spec.data.items()):
        if source.path is not None:
            digest.update(name.encode() + (doc.path.parent / source.path).read_bytes())
    return digest.hexdigest()


def _capabilities(spec: SuiteBase) -> list[Any]:
    """The capabilities with their checks: `suite_model` built their type from the registered
    check types, so it is known only at run time."""
    return list(spec.capabilities)
