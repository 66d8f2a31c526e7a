"""`similarity`: cosine similarity between the output and its reference(s), as a
sentence-embedding model sees them.

The embedding model is a sentence-transformers model: a local directory (relative paths are
taken from the suite's directory, as every path in a suite is) or a hub id, which loads only
where the hub is reachable. Each case scores the cosine of its output and its closest reference
(`similarity`) and passes when that is at least `threshold` (`acc`, the share that passed, as in
`exact` and `contains`). Scores are cached per output, keyed by a fingerprint of the model's
files (of its weights, for a hub id), so another model, or the same directory changed, scores
afresh, while changing `threshold` reuses them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from harness.checks import Case, CheckSpec, CheckType, EvalContext, Outcome, expected_list
from harness.checks._sampling import run_sampled
from harness.core.device import resolve_device
from harness.core.home import harness_home, write_json_atomically
from harness.models.fingerprint import tensors_fingerprint
from harness.models.loading import user_facing_errors

METRICS = ("similarity", "acc")  # the continuous score first: a reward's default metric
# Files that make a directory a sentence-transformers model (config.json alone: a plain
# transformers encoder, which sentence-transformers mean-pools).
MODEL_MARKERS = ("modules.json", "config.json")


class SimilarityParams(CheckSpec):
    model: str = Field(
        description="A sentence-transformers model: a local directory (relative to the suite) "
        "or a hub id (needs the hub)"
    )
    references_field: str = "expected"  # a reference string or a list (the closest one counts)
    threshold: float = Field(
        0.8,
        ge=-1.0,
        le=1.0,
        description="A case passes when its cosine similarity is at least this",
    )
    batch_size: int = Field(32, ge=1, description="Texts embedded per forward pass")


@dataclass(frozen=True)
class ModelSource:
    kind: Literal["directory", "hub"]
    name: str  # an absolute path, or the hub id


def model_source(model: str, suite_dir: Path | None) -> ModelSource:
    """Where `model` lives, by the rule suites use for model references: a path that exists
    (relative to the suite) or looks like one is a directory; anything else is a hub id."""
    local = Path(model).expanduser()
    if not local.is_absolute() and suite_dir is not None:
        local = suite_dir / local
    if local.exists() or model.startswith((".", "/", "~")) or model.count("/") > 1:
        return ModelSource("directory", str(local.resolve()))
    return ModelSource("hub", model)


def model_problem(source: ModelSource) -> str | None:
    """Why a local model directory cannot be loaded, found without loading it; None when it
    looks loadable (a hub id can only be confirmed by loading)."""
    if source.kind == "hub":
        return None
    path = Path(source.name)
    if not path.is_dir():
        return f"similarity: no model directory at {path}"
    if not any((path / marker).is_file() for marker in MODEL_MARKERS):
        return (
            f"similarity: {path} is not a sentence-transformers model (it has no "
            f"{' or '.join(MODEL_MARKERS)})"
        )
    return None


def _problems(params: SimilarityParams, suite_dir: Path) -> list[tuple[tuple[str | int, ...], str]]:
    problem = model_problem(model_source(params.model, suite_dir))
    return [(("model",), problem)] if problem else []


# ---- the model and its identity ---------------------------------------------------------

_MODELS: dict[tuple[str, str], Any] = {}  # (source, device) -> SentenceTransformer, loaded once


def load_encoder(source: ModelSource) -> Any:
    """The SentenceTransformer for `source` on the harness's device, loaded once per process
    (a run scores the base and every candidate with it)."""
    device = resolve_device(None)
    key = (source.name, device)
    if key not in _MODELS:
        from sentence_transformers import SentenceTransformer

        with user_facing_errors(source.name):
            _MODELS[key] = SentenceTransformer(source.name, device=device)
    return _MODELS[key]


def files_fingerprint(directory: Path) -> str:
    """Hash of every file's relative path and bytes under `directory`, remembered for the
    files' sizes and modification times (hashing a 90 MB model costs ~0.2 s a run otherwise).
    Dot-paths (.git, .cache, .gitattributes) are left out: they do not shape the embeddings."""
    directory = directory.resolve()
    files = model_files(directory)
    names = [str(path.relative_to(directory)) for path in files]
    stats = [[n, p.stat().st_size, p.stat().st_mtime_ns] for n, p in zip(names, files, strict=True)]
    state = json.dumps([str(directory), stats])
    memo = (
        harness_home()
        / "fingerprints"
        / f"embedder-{hashlib.sha256(state.encode()).hexdigest()[:24]}.json"
    )
    try:
        return str(json.loads(memo.read_text(encoding="utf-8"))["fingerprint"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    digest = hashlib.sha256()
    for name, path in zip(names, files, strict=True):
        with path.open("rb") as handle:
            digest.update(f"{name}\n".encode() + hashlib.file_digest(handle, "sha256").digest())
    value = digest.hexdigest()[:32]
    write_json_atomically(memo, {"directory": str(directory), "fingerprint": value})
    return value


def model_files(directory: Path) -> list[Path]:
    """Every file under `directory`, linked files and folders followed (a model assembled from
    links scores what they point to), dot-paths left out."""
    found: list[Path] = []
    for root, folders, names in os.walk(directory, followlinks=True):
        folders[:] = [name for name in folders if not name.startswith(".")]
        found += [Path(root) / name for name in names if not name.startswith(".")]
    return sorted(found)


def model_identity(source: ModelSource) -> str:
    """What identifies the embedding model in cache keys: its files for a directory (known
    without loading it), its weights for a hub id (whose files only loading fetches)."""
    if source.kind == "directory":
        return f"files:{files_fingerprint(Path(source.name))}"

    return f"weights:{tensors_fingerprint(load_encoder(source).state_dict())}"


# ---- scoring ---------------------------------------------------------------------------


def cosines(
    outputs: Sequence[str],
    references: Sequence[Sequence[str]],
    params: SimilarityParams,
    source: ModelSource,
) -> list[float]:
    """Each output's cosine similarity with its closest reference, every distinct text embedded
    once, `batch_size` at a time, as unit vectors (so a dot product is the cosine)."""
    texts = list(dict.fromkeys([*outputs, *(r for refs in references for r in refs)]))
    vectors = load_encoder(source).encode(
        texts,
        batch_size=params.batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    row = {text: vectors[i] for i, text in enumerate(texts)}
    return [
        max(float(row[output] @ row[ref]) for ref in refs)
        for output, refs in zip(outputs, references, strict=True)
    ]


def outcome(output: str, refs: list[str], cosine: float, params: SimilarityParams) -> Outcome:
    passed = cosine >= params.threshold
    scores = {"similarity": cosine, "acc": float(passed)}
    return Outcome(output, scores, passed, " | ".join(refs))


def _references(case: Case, params: SimilarityParams) -> list[str]:
    return expected_list(case.fields[params.references_field])


def _key(identity: str, output: str, refs: list[str]) -> str:
    text = json.dumps([identity, output, refs], ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def run_similarity(
    cases: Sequence[Case],
    params: SimilarityParams,
    ctx: EvalContext,
    suite_dir: Path | None = None,
) -> list[Outcome]:
    if params.samples > 1:
        return run_sampled(cases, params, ctx, partial(score_similarity, suite_dir=suite_dir))
    source = model_source(params.model, suite_dir)
    outputs = ctx.engine.generate([case.prompt for case in cases], ctx.generation)
    references = [_references(case, params) for case in cases]
    identity = model_identity(source)
    keys = [_key(identity, o, r) for o, r in zip(outputs, references, strict=True)]
    cache = ctx.engine.cache
    found = cache.get_many("similarity", keys) if cache is not None else {}
    todo = [i for i, key in enumerate(keys) if key not in found]
    if todo:
        scores = cosines([outputs[i] for i in todo], [references[i] for i in todo], params, source)
        fresh = {keys[i]: score for i, score in zip(todo, scores, strict=True)}
        if cache is not None:
            cache.put_many("similarity", fresh)
        found.update(fresh)
    return [
        outcome(output, refs, float(found[key]), params)
        for output, refs, key in zip(outputs, references, keys, strict=True)
    ]


def score_similarity(
    output: str, case: Case, params: SimilarityParams, suite_dir: Path | None = None
) -> Outcome:
    """One output on its own (`samples: k`, and GRPO rewards), uncached."""
    refs = _references(case, params)
    (cosine,) = cosines([output], [refs], params, model_source(params.model, suite_dir))
    return outcome(output, refs, cosine, params)


def _validate_case(case: Case, params: SimilarityParams) -> None:
    if not _references(case, params):
        raise ValueError(f"similarity: no reference in `{params.references_field}`")


def _specialise(
    check: CheckType[SimilarityParams], _params: SimilarityParams, suite_dir: Path
) -> Any:
    return replace(
        check,
        run=partial(run_similarity, suite_dir=suite_dir),
        score=partial(score_similarity, suite_dir=suite_dir),
    )


CHECK = CheckType(
    "similarity",
    SimilarityParams,
    METRICS,
    run_similarity,
    required_fields=lambda p: {p.references_field},
    ranges={"similarity": (-1.0, 1.0)},  # a cosine; `acc` is a share, the default range
    validate_case=_validate_case,
    score=score_similarity,
    specialise=_specialise,
    problems=_problems,
)
