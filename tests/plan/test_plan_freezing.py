"""`harness plan` for freezing schedules (full backend, `freeze:`) and for continued pre-training
(pretrain backend): frozen weights need no gradients, optimizer states or saved activations, and
the estimate's trainable count is the backend's own selection on builtin:tiny."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from harness.backends import BACKENDS
from harness.backends.freezing import Freezer, layer_schedule
from harness.plan._estimate import (
    FP32,
    FrozenShape,
    ModelShape,
    TrainingSetup,
    frozen_trainable_parameters,
    model_shape,
    parameter_count,
    training_activation_bytes,
    training_breakdown,
)
from harness.plan._suite import DeviceInfo, frozen_shape

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "suites" / "data"
FULL = BACKENDS.get("full")
CPU = DeviceInfo("cpu", "float32", None, "")
# h 8, 2 layers, i 16, 2 heads of 4, vocabulary 10, tied (as in test_planner.py)
SHAPE = ModelShape(
    model_type="llama", vocab_size=10, hidden_size=8, intermediate_size=16, num_layers=2,
    num_heads=2, num_kv_heads=2, head_dim=4, tie_word_embeddings=True,
)  # fmt: skip


def planned_frozen(args: dict[str, Any]) -> FrozenShape:
    frozen = frozen_shape(FULL.memory_profile(FULL.Config(**args)))
    assert frozen is not None
    return frozen


def selected_parameters(model: Any, config: Any) -> int:
    """What the backend trains on `model`: the groups whose turn comes before the last step."""
    schedule = layer_schedule(config.freeze, model.config.num_hidden_layers)
    freezer = Freezer(schedule)
    freezer.attach(model)
    assert freezer.parts is not None
    due = [i for i, g in enumerate(schedule.groups) if g.start < (config.max_steps or 10**9)]
    return sum(p.numel() for i in due for p in freezer.parts.groups[i].values())


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize(
    "args",
    [
        {"freeze": {"train_last_layers": 2}},
        {"freeze": {"train_last_layers": 3, "only": "attention"}},
        {"freeze": {"only": "mlp"}},
        {"max_steps": 6, "freeze": {"unfreeze_every": 2}},  # layer 0's turn never comes
        {"max_steps": 5, "freeze": {"unfreeze_every": 4, "group_size": 2}},
    ],
)
def test_estimated_trainable_parameters_are_the_backends_selection(
    tiny_dir: Path, tmp_path: Path, args: dict[str, Any], tied: bool
) -> None:
    from transformers import AutoModelForCausalLM

    base = tiny_dir
    if not tied:
        base = tmp_path / "untied"
        shutil.copytree(tiny_dir, base)
        config = json.loads((base / "config.json").read_text())
        (base / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": False}))
    model = AutoModelForCausalLM.from_pretrained(str(base))
    shape = model_shape(json.loads((base / "config.json").read_text()))
    estimated = frozen_trainable_parameters(shape, planned_frozen(args))
    assert estimated == selected_parameters(model, FULL.Config(**args))
    assert estimated < parameter_count(shape)


def setup(**changes: Any) -> TrainingSetup:
    return replace(TrainingSetup(batch_size=4, seq_len=16, compute_bytes=4), **changes)


def test_frozen_weights_need_no_gradients_optimizer_states_or_activations() -> None:
    """The last of 2 layers trains: gradients and AdamW's states for its weights and the final
    norm only; the first layer saves nothing for backward; the tied head gets no gradient. Every
    weight is still held."""
    last = FrozenShape(trained_layers=1)
    trained = frozen_trainable_parameters(SHAPE, last)
    assert trained == 640 + 16 + 8  # one layer's linears and norms, the final norm
    full = training_breakdown(SHAPE, setup())
    frozen = training_breakdown(SHAPE, setup(frozen=last))
    assert frozen.weights == full.weights == parameter_count(SHAPE) * FP32
    assert (frozen.gradients, frozen.optimizer) == (trained * FP32, trained * 2 * FP32)
    assert frozen.trainable_parameters == trained
    one_layer = training_activation_bytes(
        replace(SHAPE, num_layers=1), 4, 16, 4, checkpointing=False
    )
    head_gradient = SHAPE.vocab_size * SHAPE.hidden_size * FP32
    assert full.activations - frozen.activations == pytest.approx(one_layer + head_gradient)


def test_checkpointing_keeps_every_layers_input_even_when_frozen() -> None:
    last = FrozenShape(trained_layers=1)
    full = training_breakdown(SHAPE, setup(gradient_checkpointing=True))
    frozen = training_breakdown(SHAPE, setup(gradient_checkpointing=True, frozen=last))
    head_gradient = SHAPE.vocab_size * SHAPE.hidden_size * FP32
    assert full.activations - frozen.activations == pytest.approx(head_gradient)


def test_autocast_copies_only_the_trained_linears() -> None:
    attention = FrozenShape(trained_layers=1, only="attention")
    bf16 = training_breakdown(SHAPE, setup(compute_bytes=2, frozen=attention))
    assert bf16.extra["autocast weight copies"] == 4 * 8 * 8 * 2  # q, k, v, o of one layer
    assert bf16.trainable_parameters == 4 * 8 * 8  # no norms, no final norm under `only`


def test_an_untied_head_trains_with_whole_layers_only() -> None:
    untied = replace(SHAPE, tie_word_embeddings=False)
    head = untied.vocab_size * untied.hidden_size
    whole = frozen_trainable_parameters(untied, FrozenShape(trained_layers=1))
    mlp = frozen_trainable_parameters(untied, FrozenShape(trained_layers=1, only="mlp"))
    assert whole == 640 + 16 + 8 + head and mlp == 3 * 8 * 16


def test_plan_of_a_suite_with_freezing_and_pretraining(tmp_path: Path) -> None:
    from harness.plan import plan_suite
    from harness.suite import load_suite

    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "name: frozen\nbase: builtin:tiny\n"
        f"data: {{train: {{path: {DATA / 'new_facts_train.jsonl'}}}, "
        f"texts: {{path: {DATA / 'fact_texts.jsonl'}}}, "
        f"new: {{path: {DATA / 'new_facts.jsonl'}}}}}\n"
        "capabilities: [{name: c, checks: [{type: qa, data: new}]}]\n"
        "candidates:\n"
        "  - {name: all, backend: full, data: train, args: {max_steps: 6}}\n"
        "  - {name: gradual, backend: full, data: train,\n"
        "     args: {max_steps: 6, freeze: {unfreeze_every: 2}}}\n"
        "  - {name: cpt, backend: pretrain, data: texts, args: {packing: true, max_length: 64}}\n",
        encoding="utf-8",
    )
    plan = plan_suite(load_suite(suite), device="cpu")
    rows = {row.name: row for row in plan.rows}
    everything, gradual, cpt = (rows[n].training for n in ("all", "gradual", "cpt"))
    assert everything is not None and gradual is not None and cpt is not None
    layer = 4 * 128 * 128 + 3 * 128 * 256 + 2 * 128
    assert gradual.trainable_parameters == 3 * layer + 128  # what the training records
    assert gradual.optimizer < everything.optimizer and gradual.total < everything.total
    assert cpt.trainable_parameters == everything.trainable_parameters  # all weights
    assert rows["cpt"].acceleration is not None and rows["cpt"].acceleration["packing"] is True


def test_packed_texts_are_planned_by_their_tokens(tiny_dir: Path) -> None:
    from transformers import AutoTokenizer

    from harness.plan._suite import BaseModel, read_config, training_setup

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_dir))
    base = BaseModel("tiny", read_config(tiny_dir), tokenizer)
    rows = [json.loads(line) for line in (DATA / "fact_texts.jsonl").read_text().splitlines()]
    pretrain = BACKENDS.get("pretrain")
    config = pretrain.Config(packing=True, max_length=64, per_device_train_batch_size=2)
    planned, _ = training_setup(pretrain, config, rows, base, CPU)
    lengths = [len(tokenizer(r["text"], add_special_tokens=False)["input_ids"]) + 1 for r in rows]
    assert planned.seq_len == max(lengths)
    assert planned.padding_free_tokens == min(2 * 64, sum(lengths))
