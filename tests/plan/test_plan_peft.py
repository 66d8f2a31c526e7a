"""harness plan for peft's methods beyond LoRA (backends/peft_methods.py): their trainable
parameters against peft's own count, their activations on hand-computed cases, saved adapters
read back, and `plan_suite` on a suite that trains them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from harness.backends import BACKENDS
from harness.plan._estimate import (
    FP32,
    LoraShape,
    ModelShape,
    TrainingSetup,
    adapter_parameters,
    model_shape,
    training_activation_bytes,
    training_breakdown,
)
from harness.plan._suite import lora_shape, saved_adapter_parameters

REPO = Path(__file__).resolve().parents[2]
# h 8, 2 layers, i 16, 2 heads of 4 (kv heads: 1, grouped), vocabulary 10, tied.
SHAPE = ModelShape(
    model_type="llama", vocab_size=10, hidden_size=8, intermediate_size=16, num_layers=2,
    num_heads=2, num_kv_heads=1, head_dim=4, tie_word_embeddings=True,
)  # fmt: skip
SETUP = TrainingSetup(batch_size=2, seq_len=5, compute_bytes=4)

# (backend, its args, the peft config the backend builds from them)
METHODS: list[tuple[str, dict[str, Any], Callable[[Any], Any]]] = [
    ("prompt_tuning", {"num_virtual_tokens": 6},
     lambda peft: peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=6)),
    ("prefix_tuning", {"num_virtual_tokens": 6},
     lambda peft: peft.PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=6)),
    ("ia3", {}, lambda peft: peft.IA3Config(task_type="CAUSAL_LM")),
    ("ia3", {"target_modules": ["q_proj", "up_proj", "down_proj"], "feedforward_modules": ["up_proj"]},
     lambda peft: peft.IA3Config(
         task_type="CAUSAL_LM", target_modules=["q_proj", "up_proj", "down_proj"],
         feedforward_modules=["up_proj"],
     )),
    ("llama_adapter", {"adapter_len": 5, "adapter_layers": 3},
     lambda peft: peft.AdaptionPromptConfig(task_type="CAUSAL_LM", adapter_len=5, adapter_layers=3)),
]  # fmt: skip


def planned(backend: str, args: dict[str, Any]) -> LoraShape:
    spec = BACKENDS.get(backend)
    shape = lora_shape(spec.memory_profile(spec.Config(**args)))
    assert shape is not None
    return shape


def peft_trainable(config: dict[str, Any], peft_config: Callable[[Any], Any]) -> int:
    """What peft really trains of this architecture, built on the meta device (no weights)."""
    import peft
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config))
    wrapped = peft.get_peft_model(model, peft_config(peft))
    return sum(p.numel() for p in wrapped.parameters() if p.requires_grad)


@pytest.mark.parametrize(("backend", "args", "peft_config"), METHODS)
@pytest.mark.parametrize("base", ["builtin:tiny", "llama-3.2-1b"])
def test_planned_trainable_parameters_are_pefts(
    backend: str, args: dict[str, Any], peft_config: Callable[[Any], Any], base: str
) -> None:
    """tiny: 4 heads and 4 kv heads; Llama 3.2 1B: 32 heads, 8 kv heads (prefix tuning sizes its
    keys and values by the kv heads) and 16 layers."""
    from harness.models.presets import preset_config
    from harness.plan._suite import model_config

    config = model_config(base) if base.startswith("builtin:") else preset_config(base).to_dict()
    expected = peft_trainable(config, peft_config)
    assert adapter_parameters(model_shape(config), planned(backend, args)) == expected


def test_hand_counted_adapter_parameters() -> None:
    # IA3 (k_proj, v_proj and down_proj's input): 4 + 4 + 16 per layer
    assert adapter_parameters(SHAPE, planned("ia3", {})) == 2 * (4 + 4 + 16)
    # 3 virtual tokens x h 8
    assert adapter_parameters(SHAPE, planned("prompt_tuning", {"num_virtual_tokens": 3})) == 24
    # 3 virtual tokens x 2 layers x (key, value) x 1 kv head x 4
    assert adapter_parameters(SHAPE, planned("prefix_tuning", {"num_virtual_tokens": 3})) == 48
    # 3 x h 8 + a gate, in the top layer
    adaption = planned("llama_adapter", {"adapter_len": 3, "adapter_layers": 1})
    assert adapter_parameters(SHAPE, adaption) == 25
    # default: every layer
    assert adapter_parameters(SHAPE, planned("llama_adapter", {"adapter_len": 3})) == 50


def test_adapters_train_only_their_parameters_in_float32() -> None:
    for backend, args in [("ia3", {}), ("prompt_tuning", {"num_virtual_tokens": 3})]:
        shape = planned(backend, args)
        breakdown = training_breakdown(SHAPE, replace(SETUP, lora=shape))
        n = adapter_parameters(SHAPE, shape)
        assert breakdown.trainable_parameters == n
        assert (breakdown.gradients, breakdown.optimizer) == (n * FP32, 2 * n * FP32)
        full = training_breakdown(SHAPE, SETUP)
        assert breakdown.total < full.total


def test_prompt_tuning_lengthens_every_sequence_by_its_virtual_tokens() -> None:
    shape = planned("prompt_tuning", {"num_virtual_tokens": 3})
    tuned = training_breakdown(SHAPE, replace(SETUP, lora=shape))
    plain = training_breakdown(SHAPE, replace(SETUP, lora=replace(shape, virtual_tokens=0)))
    layers = training_activation_bytes(SHAPE, 2, 5 + 3, 4, checkpointing=False)
    assert tuned.activations - plain.activations == pytest.approx(
        layers - training_activation_bytes(SHAPE, 2, 5, 4, checkpointing=False)
    )


def test_adapter_activations_by_hand() -> None:
    """2 sequences of 5 tokens in float32, SHAPE's q width 8."""
    # the same setup under an adapter that adds no activations of its own
    lora_free = training_breakdown(SHAPE, replace(SETUP, lora=LoraShape(0, (), method="none")))
    extra = {
        # the unscaled k, v (4 each) and down_proj input (16) per token, in both layers
        "ia3": ({}, 2 * 10 * 24 * 4),
        # per sequence 2 x 3 virtual tokens x q 8, both layers
        "prefix_tuning": ({"num_virtual_tokens": 3}, 2 * 2 * (2 * 3 * 8) * 4),
        # top layer: per token 3q + h + 2 x 3 scores (1 in fp32), per sequence 2 x 3 x q
        "llama_adapter": (
            {"adapter_len": 3, "adapter_layers": 1},
            10 * ((3 * 8 + 8 + 2 * 3) * 4 + 2 * 3 * 4) + 2 * 2 * 3 * 8 * 4,
        ),
    }
    for backend, (args, expected) in extra.items():
        breakdown = training_breakdown(SHAPE, replace(SETUP, lora=planned(backend, args)))
        assert breakdown.activations - lora_free.activations == expected, backend


def test_saved_adapters_are_read_back_as_their_method(tiny_dir: Path, tmp_path: Path) -> None:
    """An already trained adapter directory (evaluated, not trained, by the suite) counts as
    what it is: `saved_adapter_parameters` reads peft_type from adapter_config.json."""
    import peft
    from transformers import AutoModelForCausalLM

    from harness.plan._suite import model_config

    shape = model_shape(model_config("builtin:tiny"))
    configs = {
        "ia3": peft.IA3Config(task_type="CAUSAL_LM"),
        "prompt": peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=7),
        "adaption": peft.AdaptionPromptConfig(task_type="CAUSAL_LM", adapter_len=3, adapter_layers=2),
        "lora": peft.LoraConfig(task_type="CAUSAL_LM", r=4, target_modules=["q_proj", "v_proj"]),
    }  # fmt: skip
    for name, config in configs.items():
        model = peft.get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_dir), config)
        model.save_pretrained(str(tmp_path / name))
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        assert saved_adapter_parameters(str(tmp_path / name), shape) == trainable, name


def test_plan_suite_counts_each_methods_adapter(tmp_path: Path) -> None:
    from harness.plan import plan_suite
    from harness.suite import load_suite

    data = REPO / "suites" / "data"
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        f"""\
name: peft-plan
base: builtin:tiny
data: {{train: {{path: {data / "new_facts_train.jsonl"}}}, new_facts: {{path: {data / "new_facts.jsonl"}}}}}
capabilities: [{{name: new_facts, checks: [{{type: qa, data: new_facts}}]}}]
candidates:
  - {{name: prompt, backend: prompt_tuning, data: train, args: {{num_virtual_tokens: 8}}}}
  - {{name: ia3, backend: ia3, data: train}}
  - {{name: adapter, backend: llama_adapter, data: train, args: {{adapter_len: 4}}}}
  - {{name: full, backend: full, data: train}}
"""
    )
    plan = plan_suite(load_suite(suite), device="cpu")
    trainable = {
        row.name: row.training.trainable_parameters for row in plan.rows if row.training is not None
    }
    # tiny: h 128, 4 layers; k, v 128 wide, down_proj's input 256
    assert trainable["prompt"] == 8 * 128
    assert trainable["ia3"] == 4 * (128 + 128 + 256)
    assert trainable["adapter"] == 4 * (4 * 128 + 1)
    assert trainable["full"] > 100 * max(
        trainable["prompt"], trainable["ia3"], trainable["adapter"]
    )
