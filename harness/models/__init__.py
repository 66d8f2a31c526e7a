"""Model references: hub ids, local directories, `builtin:<name>` and `random:<preset>`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class LoadedModel:
    """A causal LM ready to evaluate, with what identifies its weights."""

    reference: str  # as the user wrote it
    model: Any  # transformers PreTrainedModel (or a peft model wrapping one)
    tokenizer: Any  # transformers PreTrainedTokenizerBase
    fingerprint: str  # hash of the weights (and adapter), never of the name
    path: Path | None = None  # the HF directory it was loaded from, when there is one
