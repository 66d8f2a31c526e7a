"""A model's `config.json` as a dict, read without loading weights, building or the network.

Validation uses it to check a candidate's `args:` against its base (a backend's optional
`base_problems` hook); `harness plan` reads directories through the same `read_config`. Where the
config cannot be had that cheaply (a hub id offline, a GGUF file not yet converted) the answer is
None, and the backend's own checks when training starts remain the only ones.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError
from harness.models.builtin import RECIPES, builtin_path
from harness.models.presets import PRESETS
from harness.models.tinylm import Architecture

ConfigReader = Callable[[str], dict[str, Any] | None]


def base_config(reference: str, relative_to: Path) -> dict[str, Any] | None:
    """The config of the model `reference` names (a relative directory is taken from
    `relative_to`), or None when it cannot be read without loading, building or the network:
    a hub id, a GGUF file, an unknown name (reported by reference checking), nothing there."""
    kind, _, name = reference.strip().partition(":")
    if kind == "random" and name:
        return dict(PRESETS[name][0]) if name in PRESETS else None
    if kind == "builtin" and name:
        return builtin_config(name)
    local = Path(reference).expanduser()
    local = local if local.is_absolute() else relative_to / local
    if not local.is_dir():
        return None
    return read_config(local, lambda base: base_config(base, relative_to))


def read_config(directory: Path, base_of_adapter: ConfigReader) -> dict[str, Any] | None:
    """`directory`'s config.json; for an adapter saved alone (an adapter_config.json, no
    config.json) the config of the base it names, as `base_of_adapter` reads that reference;
    None when there is neither (or it is not JSON)."""
    path, adapter = directory / "config.json", directory / "adapter_config.json"
    if not path.is_file() and adapter.is_file():
        base = _json(adapter).get("base_model_name_or_path")
        return base_of_adapter(str(base)) if base else None
    return _json(path) or None


def _json(path: Path) -> dict[str, Any]:
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def builtin_config(name: str) -> dict[str, Any] | None:
    """A trained builtin's config: its built directory's config.json when it is built, else
    what its architecture makes (known in code); None for a packaged GGUF or an unknown name."""
    if name not in RECIPES:
        return None
    try:
        built = builtin_path(name)
    except HarnessError:
        return None
    found = read_config(built, lambda _: None) if built.is_dir() else None
    return found or architecture_config(root_architecture(name))


def root_architecture(name: str) -> Architecture:
    """A builtin continues training its parent's model, so its shape is its first ancestor's."""
    recipe = RECIPES[name]
    while recipe.parent is not None:
        recipe = RECIPES[recipe.parent]
    return recipe.architecture


def architecture_config(arch: Architecture) -> dict[str, Any]:
    """The shape fields of the Llama config `tinylm.new_model` builds from `arch` (its vocabulary
    follows the trained tokenizer, so it is left out)."""
    return {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": arch.hidden_size,
        "intermediate_size": arch.intermediate_size,
        "num_hidden_layers": arch.num_layers,
        "num_attention_heads": arch.num_heads,
        "num_key_value_heads": arch.num_heads,
        "max_position_embeddings": arch.max_positions,
        "tie_word_embeddings": True,
    }
