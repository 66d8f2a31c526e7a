"""harness plan for DoRA (`use_dora: true`): what peft 0.21's DoRA forward keeps for backward,
checked against real peft layers, the estimator's arithmetic on hand-computed cases, LoRA's
estimate left as it was, and the planned delta against the one measured on an H200."""

from __future__ import annotations

import gc
import weakref
from dataclasses import replace
from typing import Any

import pytest

from harness.backends import BACKENDS
from harness.plan._estimate import (
    FP32,
    LoraShape,
    ModelShape,
    TrainingSetup,
    block_linears,
    dora_activation_bytes,
    training_breakdown,
)
from harness.plan._suite import BaseModel, DeviceInfo, model_config, training_setup

# h 8, 2 layers, i 16, 2 heads of 4, vocabulary 10, tied: outputs per layer q 8, k 8, v 8, o 8,
# gate 16, up 16, down 8 (72 in all, 16 the widest); weights per layer 8*8*4 + 8*16*3 = 640.
SHAPE = ModelShape(
    model_type="llama", vocab_size=10, hidden_size=8, intermediate_size=16, num_layers=2,
    num_heads=2, num_kv_heads=2, head_dim=4, tie_word_embeddings=True,
)  # fmt: skip
SETUP = TrainingSetup(batch_size=2, seq_len=5, compute_bytes=4)
TOKENS = 2 * 5
MIB = 2**20


def dora_minus_lora(setup: TrainingSetup, lora: LoraShape) -> float:
    with_dora = training_breakdown(SHAPE, replace(setup, lora=replace(lora, use_dora=True)))
    plain = training_breakdown(SHAPE, replace(setup, lora=lora))
    return with_dora.activations - plain.activations


def test_dora_keeps_two_outputs_of_every_adapted_linear_and_one_float32_transient() -> None:
    saved = 2 * TOKENS * 72 * 4 * SHAPE.num_layers  # base and LoRA outputs, float32
    transient = 3 * TOKENS * 16 * FP32  # the widest (gate/up) backward, float32
    assert dora_minus_lora(SETUP, LoraShape(2)) == saved + transient


def test_dora_extra_follows_the_adapted_outputs_not_the_rank() -> None:
    # q and v only: outputs 8 + 8 per layer, widest 8; the rank changes nothing of it
    only_qv = LoraShape(2, ("q_proj", "v_proj"))
    expected = 2 * TOKENS * 16 * 4 * SHAPE.num_layers + 3 * TOKENS * 8 * FP32
    assert dora_minus_lora(SETUP, only_qv) == expected
    assert dora_minus_lora(SETUP, replace(only_qv, r=8)) == expected
    # twice the tokens, twice the extra
    longer = replace(SETUP, seq_len=10)
    assert dora_minus_lora(longer, only_qv) == 2 * expected


def test_dora_under_bf16_keeps_bf16_outputs_and_with_dropout_a_weight_copy() -> None:
    bf16 = replace(SETUP, compute_bytes=2, weight_bytes=2)
    outputs = 2 * TOKENS * 72 * 2 * SHAPE.num_layers
    transient = 3 * TOKENS * 16 * FP32
    assert dora_minus_lora(bf16, LoraShape(2)) == outputs + transient
    # lora_dropout > 0: F.linear(dropout(x), W) keeps autocast's bf16 copy of each adapted weight
    copies = 640 * 2 * SHAPE.num_layers
    assert dora_minus_lora(bf16, LoraShape(2, dropout=True)) == outputs + copies + transient
    # in float32 the weight F.linear keeps is the parameter itself: nothing new
    assert dora_minus_lora(SETUP, LoraShape(2, dropout=True)) == dora_minus_lora(
        SETUP, LoraShape(2)
    )


def test_dora_with_checkpointing_holds_one_layer() -> None:
    checkpointed = replace(SETUP, gradient_checkpointing=True)
    assert dora_minus_lora(checkpointed, LoraShape(2)) == 2 * TOKENS * 72 * 4 + 3 * TOKENS * 16 * 4


def test_lora_estimate_is_unchanged_by_dora_terms() -> None:
    lora = LoraShape(2)
    plain = training_breakdown(SHAPE, replace(SETUP, lora=lora))
    # dropout only matters to DoRA; plain LoRA's estimate has no DoRA term at all
    assert training_breakdown(SHAPE, replace(SETUP, lora=replace(lora, dropout=True))) == plain
    assert dora_activation_bytes(SHAPE, lora, TOKENS, 4, checkpointing=False) == 0.0
    # DoRA's own trainable magnitude: one value per output of each adapted linear and layer
    dora = training_breakdown(SHAPE, replace(SETUP, lora=replace(lora, use_dora=True)))
    assert dora.trainable_parameters - plain.trainable_parameters == 72 * SHAPE.num_layers


# ---- against peft's DoRA forward ---------------------------------------------------------------

# q_proj 64 -> 64: its weight (4,096 values) well above the output-long vectors DoRA also keeps
WIDE = replace(SHAPE, hidden_size=64, num_heads=4, num_kv_heads=4, head_dim=16, num_layers=1)


def saved_bytes(use_dora: bool, dropout: float, bf16: bool) -> int:
    """Bytes a real peft-wrapped q_proj keeps for backward after its forward (its parameters and
    input excluded): what saved-tensor hooks saw that is still alive once the forward is done."""
    import torch
    from peft import LoraConfig, get_peft_model

    linear = next(t for t in block_linears(WIDE) if t.name == "q_proj")
    dtype = torch.bfloat16 if bf16 else torch.float32

    class Block(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q_proj = torch.nn.Linear(linear.in_features, linear.out_features, dtype=dtype)

        def forward(self, x: Any) -> Any:
            return self.q_proj(x)

    torch.manual_seed(0)
    config = LoraConfig(r=2, target_modules=["q_proj"], use_dora=use_dora, lora_dropout=dropout)
    model = get_peft_model(Block(), config).train()
    x = torch.randn(TOKENS, linear.in_features, dtype=dtype, requires_grad=True)
    kept: dict[int, tuple[int, Any]] = {}

    def pack(tensor: Any) -> Any:
        storage = tensor.untyped_storage()
        kept.setdefault(storage.data_ptr(), (storage.nbytes(), weakref.ref(tensor)))
        return tensor

    hooks = torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor)
    with hooks, torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        output = model(x)
    gc.collect()
    owned = {p.untyped_storage().data_ptr() for p in model.parameters()}
    owned.add(x.untyped_storage().data_ptr())
    assert output.requires_grad
    return sum(n for ptr, (n, ref) in kept.items() if ptr not in owned and ref() is not None)


@pytest.mark.parametrize(
    ("dropout", "bf16"), [(0.0, False), (0.1, False), (0.0, True), (0.1, True)]
)
def test_dora_saved_tensors_match_peft(dropout: float, bf16: bool) -> None:
    q_only = LoraShape(2, ("q_proj",), use_dora=True, dropout=dropout > 0)
    compute = 2 if bf16 else 4
    widest = 3 * TOKENS * 64 * FP32  # the backward transient, not a saved tensor
    expected = dora_activation_bytes(WIDE, q_only, TOKENS, compute, checkpointing=False)
    measured = saved_bytes(True, dropout, bf16) - saved_bytes(False, dropout, bf16)
    # DoRA also keeps a few vectors as long as the output (its magnitude over the norm): 64 values
    assert abs(measured - (expected - widest)) <= 4 * 64 * FP32


# ---- the planner on the H200 case ----------------------------------------------------------------


def planned_total(use_dora: bool) -> float:
    """`harness plan`'s training peak for random:qwen2.5-0.5b on a bf16 GPU, batch 8, sequences
    of 512 tokens (no tokenizer: max_length is assumed), LoRA r 8 on all linear layers."""
    from harness.plan._estimate import model_shape

    base = BaseModel("random:qwen2.5-0.5b", model_config("random:qwen2.5-0.5b"), None)
    backend = BACKENDS.get("lora")
    args = {"per_device_train_batch_size": 8, "max_length": 512, "use_dora": use_dora}
    config = backend.Config.model_validate({"learning_rate": 1e-4, "max_steps": 10, **args})
    setup, _ = training_setup(backend, config, [], base, DeviceInfo("cuda", "bfloat16", None, ""))
    assert setup.seq_len == 512 and setup.compute_bytes == 2
    assert setup.lora is not None and setup.lora.use_dora is use_dora
    return training_breakdown(model_shape(base.config), setup).total


def test_planned_dora_extra_matches_the_h200_measurement() -> None:
    # measured (bench_methods, one H200, bf16 + SDPA, 10 steps): LoRA 7,330 MiB, DoRA 12,325 MiB
    delta = (planned_total(True) - planned_total(False)) / MIB
    assert delta == pytest.approx(12_325 - 7_330, rel=0.05)


def test_lora_dropout_reaches_the_planned_adapter() -> None:
    base = BaseModel("builtin:tiny", model_config("builtin:tiny"), None)
    backend = BACKENDS.get("lora")
    config = backend.Config.model_validate({"use_dora": True, "lora_dropout": 0.05})
    setup, _ = training_setup(backend, config, [], base, DeviceInfo("cpu", "float32", None, ""))
    assert setup.lora is not None and setup.lora.dropout and setup.lora.use_dora
