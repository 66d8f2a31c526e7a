"""Model references: hub ids, local directories, `builtin:<name>` and `random:<preset>`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class LoadedModel:
    """A model ready to evaluate (a causal LM, or a sequence classifier), with what identifies
    its weights."""

    reference: str  # as the user wrote it
    model: Any  # transformers PreTrainedModel (or a peft model wrapping one)
    tokenizer: Any  # transformers PreTrainedTokenizerBase
    fingerprint: str  # hash of the weights (and adapter), never of the name
    path: Path | None = None  # the HF directory it was loaded from, when there is one
    # "causal_lm" or "classification" (harness.models.tasks.ModelTask): what the model can do
    task: str = "causal_lm"


@dataclass
class LazyModel:
    """A model whose fingerprint is known without loading it: loaded only if a request misses
    the output cache, so a fully cached rerun never reads the weights."""

    reference: str
    fingerprint: str
    parameters: int | None
    load: Callable[[], LoadedModel]
    task: str = "causal_lm"  # known from the directory's config without loading
    # harness.models.fingerprint.tokenizer_identity, remembered with the fingerprint (None:
    # not known without loading, as for a random preset)
    tokenizer: dict[str, str | None] | None = None


# Public API, imported lazily: the submodules import LoadedModel from here, and `harness validate`
# should not pay for what it does not use.
_EXPORTS = {
    "load_model": "harness.models.loading",
    "fingerprint_model": "harness.models.fingerprint",
    "parse_reference": "harness.models.references",
    "check_reference": "harness.models.references",
    "ModelReference": "harness.models.references",
    "known_builtins": "harness.models.builtin",
    "ensure_builtin": "harness.models.builtin",
    "builtin_path": "harness.models.builtin",
    "harness_home": "harness.models.builtin",
    "corpus_rows": "harness.models.builtin",
    "known_presets": "harness.models.presets",
    "answer_accuracy": "harness.models.tinylm",
}

__all__ = ["LoadedModel", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'harness.models' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
