"""Merged candidates (`merge_of:`): trained candidates' weights merged into one model.

Every source becomes a task vector, its full weights minus the base's (an adapter is merged into
the base first, so LoRA, DoRA, IA3 and full fine-tunes mix freely), and peft's merge utilities
combine the task vectors (`peft.utils.merge_utils`: task arithmetic, TIES, DARE). The result is a
plain model directory, cached under $HARNESS_HOME/artifacts like a trained candidate, keyed by
its sources' artifacts and the merge settings.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.backends import TrainResult
from harness.backends.common import load_tokenizer, quiet
from harness.core.errors import HarnessError
from harness.models.tasks import CAUSAL_LM, directory_task
from harness.suite import MergeOf
from harness.training._train import (
    TRAINING_RECORD,
    PeakMemory,
    TrainedModel,
    cached_artifact,
    cost_record,
    library_versions,
)


def merge_key(settings: MergeOf, sources: Mapping[str, TrainedModel], seed: int) -> str:
    """Everything that decides the merged weights: each source's artifact (its directory is
    named by its own key), the method, weights and density, the seed (DARE drops at random)."""
    parts = {
        "sources": [sources[name].model_dir.parent.name for name in settings.candidates],
        "settings": settings.model_dump(mode="json"),
        "seed": seed,
        "libraries": library_versions(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def merge_candidate(
    settings: MergeOf,
    base_dir: Path,
    sources: Mapping[str, TrainedModel],
    seed: int,
    *,
    retrain: bool = False,
) -> TrainedModel:
    """A candidate merged from its trained `sources` by `settings` (its `merge_of:`): from the
    cache, or merged now."""

    def build(scratch: Path) -> None:
        _merge_into(scratch, settings, base_dir, sources, seed)

    name = f"merge-{merge_key(settings, sources, seed)}"
    return cached_artifact(name, build, retrain=retrain)


def _merge_into(
    scratch: Path, settings: MergeOf, base_dir: Path, sources: Mapping[str, TrainedModel], seed: int
) -> None:
    import torch

    started = time.perf_counter()
    with PeakMemory() as memory, quiet():  # no loading bars: the run shows its own stages
        base = _causal_lm(base_dir)
        base_weights = {k: v.clone() for k, v in base.state_dict().items()}
        vectors = [
            _task_vector(name, sources[name], base, base_weights) for name in settings.candidates
        ]
        torch.manual_seed(seed)  # DARE's random drops
        merged = combine(base_weights, vectors, settings)
        base.load_state_dict(merged)
        model_dir = scratch / "model"
        base.save_pretrained(str(model_dir))
        load_tokenizer(base_dir).save_pretrained(str(model_dir))
    wall = time.perf_counter() - started
    merged_model = TrainResult(
        model_dir=model_dir,
        is_adapter=False,
        trainable_parameters=0,  # nothing trains: the sources' training is theirs
        total_parameters=sum(p.numel() for p in base.parameters()),
        train_tokens=0,
        final_loss=None,
        details={
            "merged": list(settings.candidates),
            "source_artifacts": [str(sources[n].model_dir.parent) for n in settings.candidates],
            "weights": settings.resolved_weights(),
        },
    )
    args = settings.model_dump(mode="json")
    stats = cost_record("merge", args, merged_model, wall, memory, seed) | {"data_rows": 0}
    (scratch / TRAINING_RECORD).write_text(json.dumps(stats, indent=2), encoding="utf-8")


def _causal_lm(directory: Path | str) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32)


def _task_vector(
    name: str, source: TrainedModel, base: Any, base_weights: dict[str, Any]
) -> dict[str, Any]:
    """The source's full weights minus the base's, per floating-point tensor."""
    weights = _full_weights(name, source.model_dir, base)
    if weights.keys() != base_weights.keys():
        raise HarnessError(f"{name}: its weights do not have the base's shape, so cannot merge")
    return {
        key: weights[key] - value
        for key, value in base_weights.items()
        if value.is_floating_point()
    }


def _full_weights(name: str, model_dir: Path, base: Any) -> dict[str, Any]:
    """A source's weights as a full causal LM: an adapter is merged into a copy of the base
    already in memory (not loaded again from disk)."""
    if directory_task(model_dir) != CAUSAL_LM:
        raise HarnessError(f"{name}: only causal language models merge (it is a classifier)")
    if not (model_dir / "adapter_config.json").is_file():
        return dict(_causal_lm(model_dir).state_dict())
    from peft import PeftModel

    adapted = PeftModel.from_pretrained(copy.deepcopy(base), str(model_dir))
    try:
        merged = adapted.merge_and_unload()
    except (AttributeError, NotImplementedError, ValueError) as exc:
        raise HarnessError(
            f"{name}: its adapter ({adapted.peft_type}) cannot be merged into weights: {exc}"
        ) from exc
    return dict(merged.state_dict())


def combine(
    base_weights: dict[str, Any], vectors: list[dict[str, Any]], settings: MergeOf
) -> dict[str, Any]:
    """The base plus the task vectors combined by `settings.method`. `linear` is the weighted
    mean of the models, i.e. task arithmetic with weights normalised to sum to 1."""
    import torch
    from peft.utils import merge_utils

    weights = torch.tensor(settings.resolved_weights(), dtype=torch.float32)
    if settings.method == "linear":
        weights = weights / weights.sum()
    merged = dict(base_weights)
    for key in vectors[0]:
        tensors = [vector[key] for vector in vectors]
        merged[key] = base_weights[key] + _combined(tensors, weights, settings, merge_utils)
    return merged


def _combined(tensors: list[Any], weights: Any, settings: MergeOf, merge_utils: Any) -> Any:
    method = settings.method
    if method in ("linear", "task_arithmetic"):
        return merge_utils.task_arithmetic(tensors, weights)
    if method == "ties":
        return merge_utils.ties(tensors, weights, settings.density)
    if method == "dare_linear":
        return merge_utils.dare_linear(tensors, weights, settings.density)
    return merge_utils.dare_ties(tensors, weights, settings.density)
