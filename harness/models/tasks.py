"""What a model directory holds: a causal LM, or an encoder with a sequence-classification head.

Decided from `config.json` (and `adapter_config.json` for PEFT adapters) without loading weights,
so that a model whose fingerprint is remembered (a `LazyModel`) still knows what it can do.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

ModelTask = Literal["causal_lm", "classification"]
CAUSAL_LM: ModelTask = "causal_lm"
CLASSIFICATION: ModelTask = "classification"

# Encoder families: a checkpoint of one of these without a causal LM head is meant for a
# classification (or embedding) head, never for generation.
ENCODER_TYPES = frozenset(
    {
        "albert",
        "bert",
        "camembert",
        "deberta",
        "deberta-v2",
        "distilbert",
        "electra",
        "ernie",
        "modernbert",
        "mpnet",
        "roberta",
        "xlm-roberta",
    }
)
CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")
# Written by the classification backends beside a SEQ_CLS adapter: the head's shape and labels,
# which the base must be loaded with before the adapter's head can be put on it.
HEAD_CONFIG = "classifier_head.json"


def config_task(config: Mapping[str, Any]) -> ModelTask:
    """The task of a model from its config.json contents (or `PretrainedConfig.to_dict()`)."""
    architectures = [str(a) for a in config.get("architectures") or []]
    if any("ForSequenceClassification" in a for a in architectures):
        return CLASSIFICATION
    if any(a.endswith(CAUSAL_SUFFIXES) for a in architectures):
        return CAUSAL_LM  # e.g. BertLMHeadModel: an encoder family, but a causal head
    return CLASSIFICATION if config.get("model_type") in ENCODER_TYPES else CAUSAL_LM


def adapter_task(adapter_config: Mapping[str, Any]) -> ModelTask:
    """A PEFT adapter's task: SEQ_CLS adapters carry a classification head, others are LMs."""
    return CLASSIFICATION if adapter_config.get("task_type") == "SEQ_CLS" else CAUSAL_LM


def directory_task(path: Path) -> ModelTask | None:
    """The task of a local model or adapter directory; None when its config cannot be read."""
    for name, decide in (("adapter_config.json", adapter_task), ("config.json", config_task)):
        try:
            config = json.loads((path / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        return decide(config)
    return None


def head_config(path: Path) -> dict[str, Any]:
    """The classifier head description saved beside a SEQ_CLS adapter ({} when there is none)."""
    try:
        loaded = json.loads((path / HEAD_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}
