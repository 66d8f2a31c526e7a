"""`lm_eval`: any lm-evaluation-harness task, run on the model in memory, kept per sample.

The loaded model (PEFT adapters included) is wrapped as lm-eval's `HFLM(pretrained=model,
tokenizer=tokenizer, batch_size=N)` and evaluated with `simple_evaluate(..., log_samples=True)`;
every logged sample becomes a case (id `task:doc_id`), with lm-eval's per-sample metric values
as its scores, so the mean over cases is lm-eval's number and gates can pair cases. lm-eval's
scores move slightly with the batch size (padding changes the arithmetic), so `batch_size` is a
setting of the check, the same for the base and every candidate. Tasks may be lm-eval's own or
local task YAMLs in `include_path` (relative to the suite's directory). Only metrics lm-eval
aggregates by mean are supported: others (corpus F1, BLEU) are not means over samples.

A metric is named as lm-eval names it, with its filter appended unless it is "none":
`acc`, `acc_norm`, `exact_match_strict-match`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from harness.checks import Case, CheckSpec, CheckType, EvalContext, Outcome


class LmEvalParams(CheckSpec):
    tasks: list[str] = Field(min_length=1, description="lm-eval task names (or one name)")
    include_path: str | None = Field(
        None, description="A directory of local task YAMLs, relative to the suite"
    )
    metrics: list[str] = Field(
        default_factory=lambda: ["acc"],
        min_length=1,
        description='lm-eval metric names, "metric" or "metric,filter"',
    )
    batch_size: int = Field(16, ge=1, description="HFLM batch size, pinned for base and candidates")
    num_fewshot: int | None = Field(None, ge=0)
    limit: int | None = Field(None, ge=1, description="At most this many documents per task")

    @field_validator("tasks", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_source(self) -> LmEvalParams:  # replaces CheckSpec's: lm-eval brings its documents
        if self.data is not None or self.cases is not None or self.prompt is not None:
            raise ValueError(
                "lm_eval reads its tasks' documents: drop `data`, `cases` and `prompt`"
            )
        return self


def metric_name(key: str) -> str:
    """lm-eval's "metric,filter" as a harness metric name."""
    metric, _, filter_name = key.partition(",")
    return metric if filter_name in ("", "none") else f"{metric}_{filter_name}"


def _key_parts(key: str) -> tuple[str, str]:
    metric, _, filter_name = key.partition(",")
    return metric, filter_name or "none"


def include_dir(params: LmEvalParams, suite_dir: Path | None) -> Path | None:
    if params.include_path is None:
        return None
    path = Path(params.include_path)
    return path if path.is_absolute() or suite_dir is None else suite_dir / path


def evaluate_samples(lm: Any, params: LmEvalParams, include: Path | None) -> dict[str, Any]:
    """simple_evaluate on the in-memory model: {"samples": {task: [...]}, "configs": {...}}."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    # Given an LM object, simple_evaluate ignores its own batch_size: it is set on HFLM.
    wrapped = HFLM(pretrained=lm.model, tokenizer=lm.tokenizer, batch_size=params.batch_size)
    manager = TaskManager(include_path=str(include) if include else None)
    return simple_evaluate(
        model=wrapped,
        tasks=list(params.tasks),
        task_manager=manager,
        num_fewshot=params.num_fewshot,
        limit=params.limit,
        log_samples=True,
        bootstrap_iters=0,
    )


def check_aggregations(configs: dict[str, Any], params: LmEvalParams) -> None:
    """Refuse tasks and metrics that lm-eval does not aggregate as a mean over samples."""
    for task, config in configs.items():
        if problem := task_problem(task, config, params):
            raise ValueError(problem)


def task_problem(task: str, config: dict[str, Any], params: LmEvalParams) -> str | None:
    """Why a task's resolved config cannot be kept per sample, or None when it can."""
    if config.get("output_type") == "loglikelihood_rolling":
        return (
            f"lm_eval: {task} scores perplexity over whole documents (loglikelihood_rolling), "
            "which has no per-sample score to pair and gate; use the `perplexity` check on "
            "the task's texts instead"
        )
    wanted = {_key_parts(k)[0] for k in params.metrics}
    for entry in config.get("metric_list") or []:
        metric = entry.get("metric")
        aggregation = entry.get("aggregation") or _default_aggregation(metric)
        if metric in wanted and aggregation != "mean":
            return (
                f"lm_eval: {task}'s metric {metric!r} aggregates by {aggregation!r}, not a mean "
                "over samples; it cannot be kept per sample"
            )
    return None


def _default_aggregation(metric: Any) -> str:
    """How lm-eval aggregates a metric its task config leaves unsaid."""
    try:
        from lm_eval.api.registry import get_metric_aggregation

        found = get_metric_aggregation(str(metric))
    except Exception:  # an unregistered metric: lm-eval itself would use a mean
        return "mean"
    return str(getattr(found, "__name__", found)) if found is not None else "mean"


def _problems(params: LmEvalParams, suite_dir: Path) -> list[tuple[tuple[str | int, ...], str]]:
    """Each task resolved as lm-eval resolves it (its YAML and includes; no data set is read),
    so a task that cannot be kept per sample is refused before anything runs."""
    try:
        configs = resolved_configs(params, include_dir(params, suite_dir))
    except ImportError:
        return []
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for index, task in enumerate(params.tasks):
        config = configs.get(task)
        if config is None:
            problems.append((("tasks", index), f"lm_eval: no task or group named {task!r}"))
        elif problem := task_problem(task, config, params):
            problems.append((("tasks", index), problem))
    return problems


def resolved_configs(params: LmEvalParams, include: Path | None) -> dict[str, dict[str, Any]]:
    """{task: its resolved config} for the tasks lm-eval knows (groups and tags map to {}).

    Tasks found in `include_path` resolve without indexing lm-eval's own tasks (~8 s).
    """
    from lm_eval.tasks import TaskManager

    include_arg = str(include) if include else None
    local = TaskManager(include_path=include_arg, include_defaults=False) if include else None
    everything: Any = None
    found: dict[str, dict[str, Any]] = {}
    for task in params.tasks:
        entry = local._entry(task) if local is not None else None
        if entry is None:
            everything = everything or TaskManager(include_path=include_arg)
            entry = everything._entry(task)
        if entry is not None:
            found[task] = _entry_config(entry)
    return found


def _entry_config(entry: Any) -> dict[str, Any]:
    """A task entry's config as lm-eval resolves it; {} for groups, tags and what fails."""
    if getattr(getattr(entry, "kind", None), "name", "") != "TASK":
        return {}
    try:
        from lm_eval.tasks._factory import TaskFactory  # the config, without the data set

        return dict(TaskFactory()._load_full_config(entry, None))
    except Exception:  # lm-eval's internals moved: the run-time check still refuses it
        return dict(getattr(entry, "cfg", None) or {})


def sample_outcomes(
    task: str, samples: list[dict[str, Any]], params: LmEvalParams
) -> list[Outcome]:
    """One Outcome per document: its prompt, answer, target and the requested metrics."""
    by_doc: dict[int, dict[str, Any]] = {}
    for sample in samples:
        entry = by_doc.setdefault(int(sample["doc_id"]), {"sample": sample, "scores": {}})
        for key in params.metrics:
            metric, filter_name = _key_parts(key)
            if sample.get("filter", "none") == filter_name and metric in sample:
                entry["scores"][metric_name(key)] = float(sample[metric])
    outcomes = []
    for doc_id, entry in sorted(by_doc.items()):
        sample, scores = entry["sample"], entry["scores"]
        missing = [metric_name(k) for k in params.metrics if metric_name(k) not in scores]
        if missing:
            raise ValueError(
                f"lm_eval: task {task} has no per-sample {', '.join(missing)}; its samples have {sample.get('metrics')}"
            )
        first = scores[metric_name(params.metrics[0])]
        outcomes.append(
            Outcome(
                _answer(sample),
                scores,
                first == 1.0 if first in (0.0, 1.0) else None,  # pass/fail cases can flip
                str(sample.get("target")),
                {
                    "task": task,
                    "doc_id": doc_id,
                    "filtered_resps": _plain(sample.get("filtered_resps")),
                },
                case_id=f"{task}:{doc_id}",
                prompt=_context(sample),
            )
        )
    return outcomes


def _context(sample: dict[str, Any]) -> str:
    arguments = sample.get("arguments") or [[""]]
    first = arguments[0]
    return str(first[0] if isinstance(first, list | tuple) else first)


def _answer(sample: dict[str, Any]) -> str:
    """The generated text, or for log-likelihood tasks the most likely continuation."""
    responses = sample.get("filtered_resps") or []
    if responses and all(
        isinstance(r, list | tuple) and r and isinstance(r[0], float) for r in responses
    ):
        best = max(range(len(responses)), key=lambda i: responses[i][0])
        continuation = sample["arguments"][best]
        return str(continuation[1]) if isinstance(continuation, list | tuple) else str(best)
    return str(responses[0] if isinstance(responses, list) and responses else responses)


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _cache_key(ctx: EvalContext, params: LmEvalParams, include: Path | None) -> str:
    # The task files are part of the key: editing a local task YAML or its data reruns it.
    files = (
        sorted(p for p in include.rglob("*") if p.is_file()) if include and include.is_dir() else []
    )
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(include)).encode() + path.read_bytes())  # type: ignore[arg-type]
    settings = params.model_dump(exclude={"name", "include_path"})
    payload = json.dumps([ctx.engine.fingerprint, settings, digest.hexdigest()], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def run_lm_eval(
    _cases: Sequence[Case], params: LmEvalParams, ctx: EvalContext, suite_dir: Path | None = None
) -> list[Outcome]:
    include = include_dir(params, suite_dir)
    key = _cache_key(ctx, params, include)
    cache = ctx.engine.cache
    stored = cache.get_many("lm_eval", [key]).get(key) if cache is not None else None
    if stored is None:
        ctx.engine.require_causal_lm("an lm_eval task")
        result = evaluate_samples(ctx.engine.lm, params, include)
        check_aggregations(result.get("configs", {}), params)
        stored = {task: _plain(samples) for task, samples in result["samples"].items()}
        if cache is not None:
            cache.put_many("lm_eval", {key: stored})
    return [o for task in params.tasks for o in sample_outcomes(task, stored.get(task, []), params)]


def _specialise(check: CheckType[LmEvalParams], params: LmEvalParams, suite_dir: Path) -> Any:
    metrics = tuple(metric_name(k) for k in params.metrics)
    return replace(check, metrics=metrics, run=partial(run_lm_eval, suite_dir=suite_dir))


CHECK = CheckType(
    "lm_eval",
    LmEvalParams,
    ("acc",),
    run_lm_eval,
    own_cases=True,
    problems=_problems,
    default_range=None,  # a task's metrics: judged from the scores seen
    specialise=_specialise,
)
