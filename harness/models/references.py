"""Parsing and cheap checking of model references, without loading anything (for validation)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, NamedTuple

from harness.core.errors import HarnessError, ModelNotFoundError
from harness.models.builtin import PACKAGED, builtin_recipe, ensure_builtin
from harness.models.gguf import check_gguf_file, ensure_converted, is_gguf_reference
from harness.models.presets import preset_fields

ReferenceKind = Literal["builtin", "random", "directory", "gguf", "hub"]
PATH_PREFIXES = ("./", "../", "/", "~", ".\\", "..\\")


class ModelReference(NamedTuple):
    """A parsed model reference: its kind and the name within that kind (an absolute path for a
    directory)."""

    kind: ReferenceKind
    name: str


def parse_reference(reference: str) -> ModelReference:
    """Classify a reference: `builtin:x`, `random:x`, a local directory, a `.gguf` file, or a
    hub id.

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
    if is_gguf_reference(reference):
        return ModelReference("gguf", str(path.resolve()))
    if reference.startswith(PATH_PREFIXES) or path.is_dir():
        return ModelReference("directory", str(path.resolve()))
    return ModelReference("hub", reference)


def check_reference(reference: str) -> ModelReference:
    """Parse and check what can be checked without loading: builtin and preset names exist, a
    path-like directory exists, a GGUF file exists and can be read. A packaged builtin comes back
    as the GGUF file its package ships. Raises HarnessError (with a did-you-mean) when not."""
    parsed = parse_reference(reference)
    if parsed.kind == "builtin" and parsed.name in PACKAGED:
        parsed = ModelReference("gguf", str(PACKAGED[parsed.name].path()))
    if parsed.kind == "gguf":
        check_gguf_file(Path(parsed.name))
    elif parsed.kind == "builtin":
        builtin_recipe(parsed.name)
    elif parsed.kind == "random":
        preset_fields(parsed.name)
    elif parsed.kind == "directory" and not Path(parsed.name).is_dir():
        raise ModelNotFoundError(f"no model directory at {parsed.name} (model {reference!r})")
    return parsed


def local_directory(parsed: ModelReference) -> Path:
    """The Hugging Face directory a builtin, GGUF or directory reference stands for, built or
    converted first when it is not yet (use `check_reference`'s result)."""
    if parsed.kind == "builtin":
        return ensure_builtin(parsed.name)
    if parsed.kind == "gguf":
        return ensure_converted(Path(parsed.name))
    if parsed.kind == "directory":
        return Path(parsed.name)
    raise ValueError(f"a {parsed.kind} reference has no local directory")
