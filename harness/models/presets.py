"""`random:<preset>`: a published architecture's shape with random weights, for memory and speed.

The dimensions are those of the published `config.json` of each model. The tokenizer is the
builtin byte-level one (400 ids, all below every preset's vocabulary size): enough to feed the
model tokens when measuring memory and throughput, meaningless for quality.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from harness.core.errors import HarnessError
from harness.core.registry import did_you_mean
from harness.models.tinylm import train_tokenizer

_LLAMA3_ROPE = {
    "factor": 8.0,
    "high_freq_factor": 4.0,
    "low_freq_factor": 1.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3",
}
_QWEN25 = {"model_type": "qwen2", "rope_theta": 1_000_000.0, "rms_norm_eps": 1e-6}
_LLAMA3 = {"model_type": "llama", "vocab_size": 128256, "rope_theta": 500_000.0}

# name -> (config fields, published parameter count)
PRESETS: dict[str, tuple[dict[str, Any], int]] = {
    "qwen2.5-0.5b": (
        {**_QWEN25, "vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864,
         "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
         "max_position_embeddings": 32768, "tie_word_embeddings": True},
        494_032_768,
    ),
    "qwen2.5-1.5b": (
        {**_QWEN25, "vocab_size": 151936, "hidden_size": 1536, "intermediate_size": 8960,
         "num_hidden_layers": 28, "num_attention_heads": 12, "num_key_value_heads": 2,
         "max_position_embeddings": 32768, "tie_word_embeddings": True},
        1_543_714_304,
    ),
    "qwen2.5-7b": (
        {**_QWEN25, "vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944,
         "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
         "max_position_embeddings": 32768, "tie_word_embeddings": False},
        7_615_616_512,
    ),
    "llama-3.2-1b": (
        {**_LLAMA3, "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
         "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64,
         "max_position_embeddings": 131072, "tie_word_embeddings": True,
         "rope_scaling": {**_LLAMA3_ROPE, "factor": 32.0}},
        1_235_814_400,
    ),
    "llama-3-8b": (
        {**_LLAMA3, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
         "num_attention_heads": 32, "num_key_value_heads": 8, "max_position_embeddings": 8192,
         "tie_word_embeddings": False},
        8_030_261_248,
    ),
    "llama-3.1-8b": (
        {**_LLAMA3, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
         "num_attention_heads": 32, "num_key_value_heads": 8, "max_position_embeddings": 131072,
         "tie_word_embeddings": False, "rope_scaling": _LLAMA3_ROPE},
        8_030_261_248,
    ),
}  # fmt: skip


def known_presets() -> tuple[str, ...]:
    """Names accepted after `random:`."""
    return tuple(PRESETS)


def preset_fields(name: str) -> dict[str, Any]:
    """The config fields of preset `name`, or a HarnessError with a did-you-mean."""
    if name not in PRESETS:
        hint = did_you_mean(name, known_presets())
        raise HarnessError(f"unknown preset {name!r}{hint}; known: {', '.join(known_presets())}")
    return dict(PRESETS[name][0])


def published_parameters(name: str) -> int:
    """The parameter count the model's publishers report (embeddings counted once when tied)."""
    preset_fields(name)
    return PRESETS[name][1]


def preset_config(name: str, tokenizer: Any | None = None) -> Any:
    """A transformers config for preset `name`; special ids follow `tokenizer` when given."""
    from transformers import AutoConfig

    fields = preset_fields(name)
    if tokenizer is not None:
        fields |= {"eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
        fields["bos_token_id"] = None
    return AutoConfig.for_model(**fields)


def random_model(
    name: str, *, seed: int = 0, dtype: Any = None, device: str = "cpu"
) -> tuple[Any, Any]:
    """(model, tokenizer): preset `name` with seeded random weights, made on `device` in `dtype`.

    Creating the modules under `torch.device(device)` with the default dtype set means an 8B
    model in bf16 on a GPU never exists as fp32 weights in CPU memory.
    """
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = train_tokenizer(vocab_size=400)
    config = preset_config(name, tokenizer)
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype or torch.float32)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), tokenizer


def random_fingerprint(name: str, *, seed: int, dtype: Any, device: str) -> str:
    """Fingerprint of a random preset: its weights are a pure function of these inputs, and
    hashing 16 GB of an 8B model's weights would cost longer than building it."""
    import torch

    parts = [name, preset_fields(name), seed, str(dtype), device.split(":")[0], torch.__version__]
    return "random-" + hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:32]


def count_parameters(name: str) -> int:
    """Parameters of preset `name`, counted on the meta device (no memory used)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(preset_config(name))
    return sum(p.numel() for p in model.parameters())
