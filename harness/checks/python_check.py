"""`python`: a user function scores each output. Opt-in: the suite must set `allow_python: true`.

`function: "module:function"` names an importable module (the suite's directory is searched
first) or a file, `"scorers.py:function"`, relative to the suite. The function is called as
`function(output, row)` with the generated text and the row's fields, and returns a number (the
check's first metric) or a dict of numbers (one per metric named in `metrics`). The opt-in is
enforced when the suite is loaded (`CheckType.opt_in`, checked in harness/suite.py), so no user
code is imported or run by a suite that did not allow it.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from harness.checks import Case, CheckSpec, CheckType, EvalContext, Outcome


class PythonParams(CheckSpec):
    function: str = Field(description="module:function or file.py:function, called (output, row)")
    metrics: list[str] = Field(default_factory=lambda: ["score"], min_length=1)
    pass_threshold: float | None = Field(
        None, description="A case passes when its first metric is at least this"
    )

    @field_validator("function")
    @classmethod
    def _has_colon(cls, value: str) -> str:
        module, _, name = value.rpartition(":")
        if not module or not name.isidentifier():
            raise ValueError(f'give "module:function" or "file.py:function", got {value!r}')
        return value


def load_function(reference: str, suite_dir: Path | None) -> Callable[..., Any]:
    """The function `reference` names; ValueError saying what could not be found."""
    module_name, _, name = reference.rpartition(":")
    if module_name.endswith(".py"):
        module = _module_from_file(Path(module_name), suite_dir)
    else:
        module = _import(module_name, suite_dir)
    function = getattr(module, name, None)
    if not callable(function):
        raise ValueError(f"python check: {module_name} has no function {name!r}")
    return function  # type: ignore[no-any-return]


def _module_from_file(path: Path, suite_dir: Path | None) -> Any:
    full = path if path.is_absolute() or suite_dir is None else suite_dir / path
    if not full.is_file():
        raise ValueError(f"python check: no file {full}")
    spec = importlib.util.spec_from_file_location(f"harness_user_{full.stem}", full)
    assert spec is not None and spec.loader is not None  # a .py file always has a loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _import(module_name: str, suite_dir: Path | None) -> Any:
    added = suite_dir is not None and str(suite_dir) not in sys.path
    if added:
        sys.path.insert(0, str(suite_dir))
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"python check: cannot import {module_name!r}: {exc}") from exc
    finally:
        if added:
            sys.path.remove(str(suite_dir))


def to_scores(value: Any, metrics: list[str], where: str) -> dict[str, float]:
    """The function's return value as {metric: float}; ValueError when it does not fit."""
    if isinstance(value, bool | int | float):
        values = {metrics[0]: float(value)}
    elif isinstance(value, dict):
        values = {str(k): float(v) for k, v in value.items()}
    else:
        raise ValueError(f"{where}: returned {type(value).__name__}, not a number or a dict")
    missing = [m for m in metrics if m not in values]
    if missing:
        raise ValueError(f"{where}: returned no {', '.join(missing)} (it gave {sorted(values)})")
    return {m: values[m] for m in metrics}


def run_python(
    cases: Sequence[Case], params: PythonParams, ctx: EvalContext, suite_dir: Path | None = None
) -> list[Outcome]:
    function = load_function(params.function, suite_dir)
    outputs = ctx.engine.generate([case.prompt for case in cases], ctx.generation)
    outcomes = []
    for output, case in zip(outputs, cases, strict=True):
        where = f"{params.function} on case {case.id} ({case.source})"
        scores = to_scores(function(output, dict(case.fields)), params.metrics, where)
        first = scores[params.metrics[0]]
        passed = None
        if params.pass_threshold is not None:
            passed = not math.isnan(first) and first >= params.pass_threshold
        outcomes.append(Outcome(output, scores, passed))
    return outcomes


def _specialise(check: CheckType[PythonParams], params: PythonParams, suite_dir: Path) -> Any:
    return replace(
        check, metrics=tuple(params.metrics), run=partial(run_python, suite_dir=suite_dir)
    )


CHECK = CheckType(
    "python",
    PythonParams,
    ("score",),
    run_python,
    opt_in="allow_python",
    default_range=None,  # the user's scores: judged from the scores seen
    specialise=_specialise,
)
