"""Every problem of a suite at its `FILE:LINE:COL`: collected, sorted, raised at once, and
pydantic's validation errors mapped to the positions the YAML source remembers."""

from __future__ import annotations

import re
import typing
from typing import Annotated, Any, Union

from pydantic import BaseModel, ValidationError

from harness.checks import CHECKS
from harness.core.errors import HarnessError
from harness.core.registry import did_you_mean
from harness.suite._schema import suite_model
from harness.suite._source import PathKey, YamlDocument


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


def pydantic_problems(
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


# Keys a suite may still carry from an earlier version, and what replaced them.
REMOVED_KEYS: dict[PathKey, str] = {
    ("training",): "`training: {parallel: N}` is gone: candidates train side by side on a Ray "
    "cluster, a local one included, with `execution: {engine: ray}`",
}


def _describe(error: Any, path: PathKey, model: type[BaseModel]) -> tuple[PathKey, str, bool]:
    kind = error["type"]
    if kind == "extra_forbidden" and path in REMOVED_KEYS:
        return path, f'unknown key "{path[-1]}": {REMOVED_KEYS[path]}', True
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
