"""Fingerprints of model weights: a changed checkpoint gets a new one, a renamed one does not."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

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
