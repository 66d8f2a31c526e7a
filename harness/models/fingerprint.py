"""Fingerprints of model weights: a changed checkpoint gets a new one, a renamed one does not."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.home import harness_home, write_json_atomically

FINGERPRINT_CHARS = 32


def fingerprint_model(model: Any) -> str:
    """Hash of a model's weights (parameter names, dtypes, shapes and bytes), never of its name.

    For a peft model: the base fingerprint (equal to the unwrapped base model's) combined with
    the adapter weights' hash, so base and adapter changes both show.
    """
    if is_peft_model(model):
        return combine_fingerprints(base_fingerprint(model), adapter_fingerprint(model))
    return tensors_fingerprint(model.state_dict())


def tensors_fingerprint(state: Mapping[str, Any]) -> str:
    """Hash of named tensors, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name]
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor_bytes(tensor))
    return digest.hexdigest()[:FINGERPRINT_CHARS]


def tensor_bytes(tensor: Any) -> memoryview:
    """The raw bytes of a tensor on the CPU; via uint8 because numpy has no bfloat16."""
    import torch

    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy())


def tokenizer_identity(tokenizer: Any) -> dict[str, str | None]:
    """What must match for two models' outputs to be compared on the same footing: a hash of
    the tokenizer's vocabulary and special tokens, and one of its chat template (None without)."""
    vocabulary = sorted(tokenizer.get_vocab().items())
    special = sorted(str(t) for t in getattr(tokenizer, "all_special_tokens", []))
    text = json.dumps([vocabulary, special], ensure_ascii=False)
    template = getattr(tokenizer, "chat_template", None)
    return {
        "tokenizer": hashlib.sha256(text.encode()).hexdigest()[:FINGERPRINT_CHARS],
        "chat_template": (
            hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:16]
            if template
            else None
        ),
    }


def combine_fingerprints(*parts: str) -> str:
    """One fingerprint from several (e.g. base + adapter)."""
    return hashlib.sha256("+".join(parts).encode()).hexdigest()[:FINGERPRINT_CHARS]


def is_peft_model(model: Any) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


def adapter_fingerprint(model: Any) -> str:
    """Hash of the active adapter's weights as peft saves them."""
    from peft import get_peft_model_state_dict

    return tensors_fingerprint(get_peft_model_state_dict(model))


def base_fingerprint(model: Any) -> str:
    """Hash of a peft model's base weights under their original names (adapter layers left out)."""
    active = getattr(model, "active_peft_config", None)
    if getattr(active, "is_adaption_prompt", False):
        # Adaption prompts wrap whole attention modules (no tuner layers to skip): the base's
        # own modules are back in place while the adapter is disabled.
        with model.disable_adapter():
            return tensors_fingerprint(model.get_base_model().state_dict())
    adapter_names = adapter_layer_names(model)
    state = {
        name.replace(".base_layer", ""): tensor
        for name, tensor in model.get_base_model().state_dict().items()
        if adapter_names.isdisjoint(name.split("."))
    }
    return tensors_fingerprint(state)


def adapter_layer_names(model: Any) -> set[str]:
    """Attribute names under which peft keeps adapter weights (lora_A, lora_B, ...)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    names: set[str] = set()
    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            names.update(module.adapter_layer_names)
    return names


# --- Remembered fingerprints ---------------------------------------------------------------
# Hashing weights needs them loaded; for a directory whose files have not changed since (same
# names, sizes and modification times, as make and ccache trust), the fingerprint from last time
# is reused, which lets a fully cached rerun skip loading the model at all.


@dataclass(frozen=True)
class Remembered:
    fingerprint: str
    parameters: int | None
    tokenizer: dict[str, str | None] | None = None  # tokenizer_identity, when remembered


def _file_stats(directory: Path) -> dict[str, list[int]]:
    return {
        entry.name: [entry.stat().st_size, entry.stat().st_mtime_ns]
        for entry in sorted(directory.iterdir())
        if entry.is_file()
    }


def _memo_path(directory: Path, setting: str) -> Path:

    key = hashlib.sha256(f"{directory.resolve()}|{setting}".encode()).hexdigest()[:24]
    return harness_home() / "fingerprints" / f"{key}.json"


def recall_fingerprint(directory: Path, setting: str) -> Remembered | None:
    """The fingerprint remembered for `directory` loaded with `setting` (device and dtype),
    if none of its files changed since."""
    try:
        memo = json.loads(_memo_path(directory, setting).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if memo.get("files") != _file_stats(directory):
        return None
    return Remembered(memo["fingerprint"], memo.get("parameters"), memo.get("tokenizer"))


def remember_fingerprint(
    directory: Path,
    setting: str,
    fingerprint: str,
    parameters: int | None,
    tokenizer: dict[str, str | None] | None = None,
) -> None:
    path = _memo_path(directory, setting)
    memo: dict[str, Any] = {
        "directory": str(directory.resolve()),
        "setting": setting,
        "files": _file_stats(directory),
    }
    memo |= {"fingerprint": fingerprint, "parameters": parameters, "tokenizer": tokenizer}
    write_json_atomically(path, memo)
