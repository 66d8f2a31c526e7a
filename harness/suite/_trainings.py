"""Trained candidates, checked before anything runs: backend, `args:`, data rows and reward.

Everything a backend will refuse is found here, at `harness validate` time, and reported at its
FILE:LINE:COL like any other suite error: unknown or mistyped args (with did-you-mean),
impossible combinations, args the base cannot follow (when its config.json can be read without
loading it), rows missing a field the backend needs, a reward that names nothing.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness.backends import BACKENDS
from harness.core.errors import HarnessError
from harness.core.registry import did_you_mean
from harness.models.configs import base_config
from harness.suite._data import Row
from harness.suite._planned import AccelerateConfig, PlannedCheck, PlannedTraining
from harness.suite._problems import Problems, pydantic_problems
from harness.suite._schema import Checkpoints, SuiteBase
from harness.suite._source import PathKey


def plan_trainings(
    spec: SuiteBase,
    datasets: dict[str, list[Row]],
    checks: Sequence[PlannedCheck],
    problems: Problems,
    *,
    base: str | None = None,
    relative_to: Path | None = None,
) -> dict[str, PlannedTraining]:
    """The trained candidates, checked. `base`: the reference they train from (the suite's, or
    --base, a relative path taken from `relative_to`, default the suite's folder), whose config
    the backends' `base_problems` check the args against; None: not checked (`harness gate`)."""
    trained = [(i, c) for i, c in enumerate(spec.candidates) if c.backend is not None]
    folder = relative_to or problems.doc.path.parent
    base_settings = base_config(base, folder) if base is not None and trained else None
    plans = {}
    for index, candidate in trained:
        where: PathKey = ("candidates", index)
        plan = _plan(spec, candidate, where, datasets, checks, problems, base_settings)
        if plan is not None:
            plans[candidate.name] = plan
    return plans


def _check_base(
    backend: Any, config: Any, settings: dict[str, Any] | None, where: PathKey, problems: Problems
) -> None:
    """The backend's optional `base_problems(config, base_config)` hook, when the base's config
    was read without loading it (else the backend checks the same when training starts)."""
    check = getattr(backend, "base_problems", None)
    if check is None or settings is None:
        return
    for message in check(config, settings):
        problems.add((*where, "args"), message)


def _plan(
    spec: SuiteBase,
    candidate: Any,
    where: PathKey,
    datasets: dict[str, list[Row]],
    checks: Sequence[PlannedCheck],
    problems: Problems,
    base_settings: dict[str, Any] | None,
) -> PlannedTraining | None:
    try:
        backend = BACKENDS.get(candidate.backend)
    except HarnessError as exc:
        problems.add((*where, "backend"), str(exc))
        return None
    config = _config(backend, candidate, where, problems)
    if config is not None:
        _check_base(backend, config, base_settings, where, problems)
    rows = _rows(backend, config, candidate, where, datasets, problems)
    replayed = _replay_rows(backend, config, candidate, where, datasets, problems)
    _check_reward(spec, backend, candidate, where, checks, problems)
    if config is None or rows is None or replayed is None:
        return None
    if trains_classifier(backend, config):
        _check_classifier_checks(spec, candidate, where, checks, problems)
    mixed = mix_replay(rows, replayed, candidate.replay, spec.seed)
    replay_rows, rows = len(mixed) - len(rows), mixed
    if candidate.merge and not backend.trains_adapter(config):
        problems.add((*where, "merge"), _merge_refusal(backend, candidate.backend, config))
    data_hash = hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()
    accelerate = _accelerate(candidate, where, problems)
    checkpoints = candidate.checkpoints
    if checkpoints is not None:
        _check_checkpoints(spec, candidate, where, problems)
    reward_model = candidate.reward.model if candidate.reward is not None else None
    return PlannedTraining(
        backend, config, tuple(rows), data_hash, candidate.reward, candidate.merge, accelerate,
        checkpoints, checkpoint_hash(spec, checks, checkpoints) if checkpoints else None,
        replay=candidate.replay, replay_rows=replay_rows, depends_on=(reward_model,) if reward_model else (),
    )  # fmt: skip


def _merge_refusal(backend: Any, name: str, config: Any) -> str:
    """Why `merge` cannot be: no adapter, or one that is no change of the base's weights."""
    adapter = backend.memory_profile(config).adapter
    if adapter is None:
        return f"`merge` needs an adapter; with these args the {name} backend trains all weights"
    return (
        f"`merge` is impossible: the {name} backend's adapter ({adapter.method}) is no change of "
        "the base's weights, so it cannot be merged into them (LoRA and IA3 can); remove `merge`"
    )


def trains_classifier(backend: Any, config: Any) -> bool:
    """A reward model or a classification head: it scores, it does not generate."""
    return bool(getattr(backend, "trains_reward_model", False)) or (
        getattr(config, "task", None) == "classification"
    )


def _check_classifier_checks(
    spec: SuiteBase,
    candidate: Any,
    where: PathKey,
    checks: Sequence[PlannedCheck],
    problems: Problems,
) -> None:
    """A classifier candidate is evaluated only by checks that can score a classifier."""
    wanted = candidate.capabilities
    unable = sorted(
        {
            f"{p.capability} · {p.label}"
            for p in checks
            if (wanted is None or p.capability in wanted) and not p.check.scores_classifiers(p.spec)
        }
    )
    if unable:
        able = sorted(
            {p.capability for p in checks if p.check.scores_classifiers(p.spec)}
            - {p.capability for p in checks if not p.check.scores_classifiers(p.spec)}
        )
        hint = f"capabilities: [{', '.join(able)}]" if able else "a `preference` or `glue` check"
        problems.add(
            (*where, "capabilities") if wanted is not None else where,
            f"{candidate.name} trains a classifier (it scores, it does not generate), but would "
            f"be evaluated by checks that need a causal LM: {', '.join(unable)}; give it {hint}",
        )


def _replay_rows(
    backend: Any,
    config: Any,
    candidate: Any,
    where: PathKey,
    datasets: dict[str, list[Row]],
    problems: Problems,
) -> list[dict[str, Any]] | None:
    """The replay data set's rows, with the fields this backend trains on ([] without replay)."""
    replay = candidate.replay
    if replay is None:
        return []
    if replay.data not in datasets or config is None:
        return None  # an unknown data set was reported with the other candidate checks
    at: PathKey = (*where, "replay", "data")
    rows = datasets[replay.data]
    if not rows:
        problems.add(at, f'data set "{replay.data}" has no rows')
        return None
    if not _fields_present(backend, config, candidate, at, rows, problems, "replayed row"):
        return None
    return [row.fields for row in rows]


def _fields_present(
    backend: Any,
    config: Any,
    candidate: Any,
    at: PathKey,
    rows: list[Row],
    problems: Problems,
    what: str = "row",
) -> bool:
    """Every row has the fields the backend trains on (the first that lacks one is reported)."""
    needed = backend.required_fields(config)
    for row in rows:
        if missing := sorted(needed - set(row.fields)):
            problems.add(
                at,
                f"{row.source}: {what} has no field {', '.join(map(repr, missing))} needed by "
                f"the {candidate.backend} backend",
            )
            return False
    return True


def mix_replay(
    rows: list[dict[str, Any]], replayed: list[dict[str, Any]], replay: Any, seed: int
) -> list[dict[str, Any]]:
    """The training rows plus a seeded sample of the replay rows making up `replay.ratio` of the
    result. More replay rows than the set holds repeat it (each row once before any twice)."""
    if replay is None or not replayed:
        return rows
    wanted = round(replay.ratio * len(rows) / (1 - replay.ratio))
    generator = random.Random(seed)
    picked: list[dict[str, Any]] = []
    while len(picked) < wanted:
        picked += generator.sample(replayed, min(len(replayed), wanted - len(picked)))
    return rows + picked


def checkpoint_capabilities(spec: SuiteBase, checkpoints: Checkpoints) -> list[Any]:
    """The capabilities evaluated at each checkpoint, in the suite's order."""
    wanted = checkpoints.capabilities
    return [c for c in spec.capabilities if wanted is None or c.name in wanted]


def checkpoint_hash(
    spec: SuiteBase, checks: Sequence[PlannedCheck], checkpoints: Checkpoints
) -> str:
    """What checkpoint evaluations depend on: the settings, the capabilities' gates and checks,
    and their cases."""
    capabilities = checkpoint_capabilities(spec, checkpoints)
    names = {c.name for c in capabilities}
    parts = {
        "settings": checkpoints.key(),
        "capabilities": [c.model_dump(mode="json") for c in capabilities],
        "cases": [
            [p.capability, p.label, [[c.id, c.prompt, dict(c.fields)] for c in p.cases]]
            for p in checks
            if p.capability in names
        ],
    }
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _check_checkpoints(spec: SuiteBase, candidate: Any, where: PathKey, problems: Problems) -> None:
    """Names that exist, and gates for `select` and `stop_on` to decide on."""
    checkpoints = candidate.checkpoints
    at: PathKey = (*where, "checkpoints")
    check_capability_names(spec, checkpoints.capabilities, (*at, "capabilities"), problems)
    evaluated = checkpoint_capabilities(spec, checkpoints)
    gated = [c for c in evaluated if c.threshold or c.forgetting or c.improve]
    if checkpoints.select == "best-passing" and not gated:
        problems.add(
            (*at, "select"),
            "best-passing needs a gate (threshold, forgetting or improve) on a capability "
            "evaluated at checkpoints",
        )
    if checkpoints.stop_on == "forgetting" and not any(c.forgetting for c in evaluated):
        problems.add(
            (*at, "stop_on"),
            "stop_on: forgetting needs a forgetting gate on a capability evaluated at checkpoints",
        )
    if candidate.accelerate is not None and candidate.accelerate.config_file is not None:
        problems.add(
            at,
            "checkpoints under `accelerate launch` need plain data parallel (no config_file): "
            "the main process saves each checkpoint alone, which FSDP's and DeepSpeed's "
            "sharded weights do not allow",
        )


def check_capability_names(
    spec: SuiteBase, names: Sequence[str] | None, at: PathKey, problems: Problems
) -> None:
    """Each name in a list of capabilities (`capabilities:`, `checkpoints.capabilities`) exists."""
    known = [c.name for c in spec.capabilities]
    for i, name in enumerate(names or []):
        if name not in known:
            problems.add(
                (*at, i),
                f'no capability "{name}"{did_you_mean(name, known)}; the suite has: '
                + ", ".join(known),
            )


def _accelerate(candidate: Any, where: PathKey, problems: Problems) -> AccelerateConfig | None:
    """The `accelerate:` block with its config file found (relative to the suite)."""
    launch = candidate.accelerate
    if launch is None:
        return None
    config_file = None
    if launch.config_file is not None:
        config_file = (problems.doc.path.parent / launch.config_file).resolve()
        if not config_file.is_file():
            problems.add(
                (*where, "accelerate", "config_file"),
                f"no accelerate config file {config_file} (write one with `accelerate config`)",
            )
            return None
    return AccelerateConfig(launch.num_processes, config_file, tuple(launch.args))


def _config(backend: Any, candidate: Any, where: PathKey, problems: Problems) -> Any:
    try:
        config = backend.Config.model_validate(candidate.args)
    except ValidationError as exc:
        for path, message, key in pydantic_problems(candidate.args, exc, backend.Config):
            problems.add((*where, "args", *path), message, key=key)
        return None
    for message in backend.problems(config):
        problems.add((*where, "args"), message)
    return config


def _rows(
    backend: Any,
    config: Any,
    candidate: Any,
    where: PathKey,
    datasets: dict[str, list[Row]],
    problems: Problems,
) -> list[dict[str, Any]] | None:
    if candidate.data is None:
        problems.add(where, f"a `{candidate.backend}` candidate needs `data:` (its training set)")
        return None
    if candidate.data not in datasets or config is None:
        return None  # an unknown data set was reported with the other candidate checks
    if not _fields_present(
        backend, config, candidate, (*where, "data"), datasets[candidate.data], problems
    ):
        return None
    if not datasets[candidate.data]:
        problems.add((*where, "data"), f'data set "{candidate.data}" has no rows')
        return None
    if not _values_fit(backend, config, (*where, "data"), datasets[candidate.data], problems):
        return None
    return [row.fields for row in datasets[candidate.data]]


MAX_ROW_PROBLEMS = 5  # rows named one by one; the next one also counts the rest


def _values_fit(
    backend: Any, config: Any, where: PathKey, rows: list[Row], problems: Problems
) -> bool:
    """The backend's optional `data_problems(config, rows)` hook: values `required_fields`
    cannot check (KTO's boolean labels), each at its row's file:line."""
    check = getattr(backend, "data_problems", None)
    found = check(config, [row.fields for row in rows]) if check is not None else []
    named = [p for p in found if p.row is not None]
    for problem in named[:MAX_ROW_PROBLEMS]:
        problems.add(where, f"{rows[problem.row].source}: {problem.message}")
    if rest := named[MAX_ROW_PROBLEMS:]:
        others = len(rest) - 1
        more = f" (and {others} more row{'s' if others > 1 else ''})" if others else ""
        problems.add(where, f"{rows[rest[0].row].source}: {rest[0].message}{more}")
    for problem in found:
        if problem.row is None:
            problems.add(where, problem.message)
    return not found


def _check_reward(
    spec: SuiteBase,
    backend: Any,
    candidate: Any,
    where: PathKey,
    checks: Sequence[PlannedCheck],
    problems: Problems,
) -> None:
    reward = candidate.reward
    if getattr(backend, "needs_reward", False) and reward is None:
        problems.add(
            where,
            f"the {candidate.backend} backend needs a `reward:` (a check of this suite, or python)",
        )
    if reward is None:
        return
    if reward.python is not None:
        _check_python_reward(spec, reward.python, (*where, "reward", "python"), problems)
        return
    if reward.model is not None:
        _check_reward_model(spec, candidate, reward.model, (*where, "reward", "model"), problems)
        return
    matched = reward_checks(reward.check, checks)
    if not matched:
        names = sorted({p.capability for p in checks} | {p.label for p in checks})
        problems.add(
            (*where, "reward", "check"),
            f'no capability or check "{reward.check}"{did_you_mean(reward.check, names)}',
        )
    elif any(p.check.score is None for p in matched):
        problems.add(
            (*where, "reward", "check"),
            f'"{reward.check}" includes a check that does not generate (rewards score generated text)',
        )
    elif reward.metric is not None and any(reward.metric not in p.check.metrics for p in matched):
        problems.add(
            (*where, "reward", "metric"), f'"{reward.metric}" is not a metric of "{reward.check}"'
        )


def _check_reward_model(
    spec: SuiteBase, candidate: Any, name: str, where: PathKey, problems: Problems
) -> None:
    """`reward: {model: NAME}` names a candidate of this suite that trains a reward model."""
    models = {c.name: c for c in spec.candidates if c.backend is not None}
    found = models.get(name)
    if found is None or name == candidate.name:
        problems.add(where, f'no trained candidate "{name}"{did_you_mean(name, list(models))}')
        return
    try:
        backend = BACKENDS.get(str(found.backend))
    except HarnessError:
        return  # its unknown backend is reported at its own line
    if not getattr(backend, "trains_reward_model", False):
        problems.add(
            where,
            f'"{name}" trains with the {found.backend} backend, not a reward model '
            "(backend: reward_model)",
        )


def _check_python_reward(spec: SuiteBase, target: str, where: PathKey, problems: Problems) -> None:
    if not spec.allow_python:
        problems.add(
            where,
            "a Python reward runs code named by the suite: set `allow_python: true` at the top of the suite to allow it",
        )
    elif ":" not in target:
        problems.add(where, f'"{target}" is not of the form module:function')


def reward_checks(name: str, checks: Sequence[PlannedCheck]) -> list[PlannedCheck]:
    """The checks a `reward: {check: NAME}` means: those of capability NAME, else labelled NAME."""
    by_capability = [p for p in checks if p.capability == name]
    return by_capability or [p for p in checks if p.label == name]
