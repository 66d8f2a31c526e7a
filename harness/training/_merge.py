"""Merged candidates (`merge_of:`): trained candidates' weights merged into one model.

Every source becomes a task vector, its full weights minus the base's (an adapter is merged into
the base first, so LoRA, DoRA, IA3 and full fine-tunes mix freely), and peft's merge utilities
combine the task vectors (`peft.utils.merge_utils`: task arithmetic, TIES, DARE). The result is a
plain model directory, cached under $HARNESS_HOME/artifacts like a trained candidate, keyed by
its sources' artifacts and the merge settings.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.backends.common import load_tokenizer, quiet
from harness.core.errors import HarnessError
from harness.core.home import harness_home
from harness.models.builtin import build_lock, remove_stale_builds
from harness.models.tasks import CAUSAL_LM, directory_task
from harness.suite import LoadedSuite
from harness.training._train import (
    TRAINING_RECORD,
    PeakMemory,
    TrainedModel,
    directory_bytes,
    library_versions,
)


def merge_settings(suite: LoadedSuite, name: str) -> Any:
    """Candidate `name`'s `merge_of:` block."""
    candidate = next(c for c in suite.spec.candidates if c.name == name)
    if candidate.merge_of is None:
        raise HarnessError(f"{name} is not a merged candidate")
    return candidate.merge_of


def merge_key(settings: Any, sources: Mapping[str, TrainedModel], seed: int) -> str:
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
    suite: LoadedSuite,
    name: str,
    base_dir: Path,
    sources: Mapping[str, TrainedModel],
    *,
    retrain: bool = False,
) -> TrainedModel:
    """Candidate `name` merged from its trained `sources`: from the cache, or merged now."""
    settings = merge_settings(suite, name)
    target = harness_home() / "artifacts" / f"merge-{merge_key(settings, sources, suite.spec.seed)}"
    target.parent.mkdir(parents=True, exist_ok=True)
    with build_lock(target):
        if not (target.is_dir() and not retrain):
            remove_stale_builds(target)
            scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
            try:
                _merge_into(scratch, settings, base_dir, sources, suite.spec.seed)
                if target.is_dir():
                    shutil.rmtree(target)
                os.rename(scratch, target)
            except BaseException:
                shutil.rmtree(scratch, ignore_errors=True)
                raise
            return _read(target, reused=False)
    return _read(target, reused=True)


def _read(target: Path, *, reused: bool) -> TrainedModel:
    record = json.loads((target / TRAINING_RECORD).read_text(encoding="utf-8"))
    record.pop("loss_curve", None)
    return TrainedModel(target / "model", None, record, [], reused)


def _merge_into(
    scratch: Path, settings: Any, base_dir: Path, sources: Mapping[str, TrainedModel], seed: int
) -> None:
    import torch

    started = time.perf_counter()
    with PeakMemory() as memory, quiet():  # no loading bars: the run shows its own stages
        base = _causal_lm(base_dir)
        base_weights = {k: v.clone() for k, v in base.state_dict().items()}
        vectors = [
            _task_vector(name, sources[name], base_dir, base_weights)
            for name in settings.candidates
        ]
        torch.manual_seed(seed)  # DARE's random drops
        merged = combine(base_weights, vectors, settings)
        base.load_state_dict(merged)
        model_dir = scratch / "model"
        base.save_pretrained(str(model_dir))
        load_tokenizer(base_dir).save_pretrained(str(model_dir))
    wall = time.perf_counter() - started
    total = sum(p.numel() for p in base.parameters())
    stats = {
        "backend": "merge",
        "args": settings.model_dump(mode="json"),
        "wall_seconds": round(wall, 3),
        "train_tokens": 0,
        "tokens_per_second": None,
        "peak_memory_bytes": memory.peak_bytes,
        "peak_memory_kind": memory.kind,
        "trainable_parameters": 0,  # nothing trains: the sources' training is theirs
        "total_parameters": total,
        "artifact_bytes": directory_bytes(model_dir),
        "final_loss": None,
        "loss_curve": [],
        "seed": seed,
        "data_rows": 0,
        "device": "cpu",
        "method": {
            "merged": list(settings.candidates),
            "source_artifacts": [str(sources[n].model_dir.parent) for n in settings.candidates],
            "weights": settings.resolved_weights(),
        },
        "libraries": library_versions(),
    }
    (scratch / TRAINING_RECORD).write_text(json.dumps(stats, indent=2), encoding="utf-8")


def _causal_lm(directory: Path | str) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32)


def _task_vector(
    name: str, source: TrainedModel, base_dir: Path, base_weights: dict[str, Any]
) -> dict[str, Any]:
    """The source's full weights minus the base's, per floating-point tensor."""
    weights = _full_weights(name, source.model_dir, base_dir)
    if weights.keys() != base_weights.keys():
        raise HarnessError(f"{name}: its weights do not have the base's shape, so cannot merge")
    return {
        key: weights[key] - value
        for key, value in base_weights.items()
        if value.is_floating_point()
    }


def _full_weights(name: str, model_dir: Path, base_dir: Path) -> dict[str, Any]:
    """A source's weights as a full causal LM: an adapter is merged into a fresh base."""
    if directory_task(model_dir) != CAUSAL_LM:
        raise HarnessError(f"{name}: only causal language models merge (it is a classifier)")
    if not (model_dir / "adapter_config.json").is_file():
        return dict(_causal_lm(model_dir).state_dict())
    from peft import PeftModel

    adapted = PeftModel.from_pretrained(_causal_lm(base_dir), str(model_dir))
    try:
        merged = adapted.merge_and_unload()
    except (AttributeError, NotImplementedError, ValueError) as exc:
        raise HarnessError(
            f"{name}: its adapter ({adapted.peft_type}) cannot be merged into weights: {exc}"
        ) from exc
    return dict(merged.state_dict())


def combine(
    base_weights: dict[str, Any], vectors: list[dict[str, Any]], settings: Any
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


def _combined(tensors: list[Any], weights: Any, settings: Any, merge_utils: Any) -> Any:
    method = settings.method
    if method in ("linear", "task_arithmetic"):
        return merge_utils.task_arithmetic(tensors, weights)
    if method == "ties":
        return merge_utils.ties(tensors, weights, settings.density)
    if method == "dare_linear":
        return merge_utils.dare_linear(tensors, weights, settings.density)
    return merge_utils.dare_ties(tensors, weights, settings.density)
