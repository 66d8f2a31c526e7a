"""Parsing and cheap checking of model references, without loading anything (for validation)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, NamedTuple

from harness.core.errors import HarnessError, ModelNotFoundError
from harness.models.builtin import builtin_recipe
from harness.models.presets import preset_fields

ReferenceKind = Literal["builtin", "random", "directory", "hub"]
PATH_PREFIXES = ("./", "../", "/", "~", ".\\", "..\\")


class ModelReference(NamedTuple):
    """A parsed model reference: its kind and the name within that kind (an absolute path for a
    directory)."""

    kind: ReferenceKind
    name: str


def parse_reference(reference: str) -> ModelReference:
    """Classify a reference: `builtin:x`, `random:x`, a local directory, or a hub id.

    Path-like references ("./x", "/x", "~/x", "../x") are directories whether or not they exist;
    a bare "org/name" is a directory only when one exists there, else a hub id.
    """
    reference = reference.strip()
    if not reference:
        raise HarnessError("empty model reference")
    for kind in ("builtin", "random"):
        if reference.startswith(f"{kind}:"):
            return ModelReference(kind, reference.removeprefix(f"{kind}:"))  # type: ignore[arg-type]
    path = Path(reference).expanduser()
    if reference.startswith(PATH_PREFIXES) or path.is_dir():
        return ModelReference("directory", str(path.resolve()))
    return ModelReference("hub", reference)


def check_reference(reference: str) -> ModelReference:
    """Parse and check what can be checked without loading: builtin and preset names exist, a
    path-like directory exists. Raises HarnessError (with a did-you-mean) when not."""
    parsed = parse_reference(reference)
    if parsed.kind == "builtin":
        builtin_recipe(parsed.name)
    elif parsed.kind == "random":
        preset_fields(parsed.name)
    elif parsed.kind == "directory" and not Path(parsed.name).is_dir():
        raise ModelNotFoundError(f"no model directory at {parsed.name} (model {reference!r})")
    return parsed
