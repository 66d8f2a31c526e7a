"""Freezing schedules on the full backend (`freeze:`): real training on builtin:tiny (4 decoder
layers, tied embeddings), the saved weights compared bit for bit with the base's."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from helpers.training import problems, sft_rows, train
from pydantic import ValidationError

from harness.backends import BACKENDS, Checkpoint, CheckpointHook, TrainRequest, TrainResult
from harness.backends.freezing import (
    FreezeArgs,
    FreezeError,
    Freezer,
    layer_schedule,
    trained_parts,
)

FULL = BACKENDS.get("full")
# builtin:tiny: hidden 128, MLP 256, 4 layers, vocabulary 400, embeddings tied to the head.
ATTENTION = 4 * 128 * 128  # q, k, v, o
MLP = 3 * 128 * 256  # gate, up, down
LAYER = ATTENTION + MLP + 2 * 128  # + its two RMSNorms
FINAL_NORM = 128
TOTAL = 4 * LAYER + FINAL_NORM + 400 * 128


def weights(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def changed(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    """Names of the tensors that differ by any bit."""
    import torch

    assert before.keys() == after.keys()
    return {name for name in before if not torch.equal(before[name], after[name])}


def layer_of(name: str) -> int | None:
    parts = name.split(".")
    return int(parts[2]) if parts[:2] == ["model", "layers"] else None


# ---- validation: no training -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("freeze", "expected"),
    [
        ({}, "give train_last_layers, only or unfreeze_every"),
        ({"train_last_layers": 0}, "greater than or equal to 1"),
        ({"only": "embeddings"}, "'attention' or 'mlp'"),
        ({"train_last_layers": 2, "group_size": 2}, "group_size applies to gradual unfreezing"),
        ({"train_last_layers": 2, "unfreeze_every": 3, "group_size": 2}, "in one group"),
    ],
)
def test_impossible_schedules_are_refused_by_the_config(
    freeze: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ValidationError, match=expected):
        FULL.Config(freeze=freeze)


def test_refusals_reach_the_suite_at_their_line(tmp_path: Path) -> None:
    classification = problems(
        tmp_path,
        "- {name: f, backend: full, data: train, args: {task: classification, "
        "freeze: {train_last_layers: 1}}}\n",
    )
    assert any("freeze applies to task: causal_lm" in p for p in classification), classification
    late = problems(
        tmp_path,
        "- {name: f, backend: full, data: train, args: {max_steps: 4, "
        "freeze: {unfreeze_every: 4}}}\n",
    )
    assert any("unfreeze_every 4 >= max_steps 4" in p for p in late), late
    empty = problems(
        tmp_path, "- name: f\n  backend: full\n  data: train\n  args:\n    freeze: {}\n"
    )
    assert any(":21:15: candidates[0].args.freeze: give train_last_layers" in p for p in empty), (
        empty
    )


def test_possible_schedules_pass() -> None:
    for freeze in (
        {"train_last_layers": 2},
        {"only": "mlp"},
        {"unfreeze_every": 10, "group_size": 2},
        {"train_last_layers": 3, "unfreeze_every": 5, "only": "attention"},
    ):
        assert FULL.problems(FULL.Config(freeze=freeze)) == [], freeze
    # Epochs: the number of steps is unknown until the data is, so nothing to compare
    assert FULL.problems(FULL.Config(num_train_epochs=1, freeze={"unfreeze_every": 500})) == []


def test_schedule_groups_go_down_from_the_top() -> None:
    gradual = layer_schedule(FreezeArgs(unfreeze_every=5, group_size=3), num_layers=8)
    assert [(g.layers, g.start) for g in gradual.groups] == [
        ((5, 6, 7), 0),
        ((2, 3, 4), 5),
        ((0, 1), 10),
    ]
    static = layer_schedule(FreezeArgs(train_last_layers=2), num_layers=8)
    assert [(g.layers, g.start) for g in static.groups] == [((6, 7), 0)]
    with pytest.raises(FreezeError, match="the base has 4 decoder layers"):
        layer_schedule(FreezeArgs(train_last_layers=5), num_layers=4)
    with pytest.raises(FreezeError, match="nothing is left to unfreeze"):
        layer_schedule(FreezeArgs(unfreeze_every=2, group_size=4), num_layers=4)


def test_more_layers_than_the_base_has_stops_before_training(
    tiny_dir: Path, tmp_path: Path
) -> None:
    request = TrainRequest(
        tiny_dir, sft_rows(), FULL.Config(freeze={"train_last_layers": 5}), 0, tmp_path / "out"
    )
    with pytest.raises(FreezeError, match="train_last_layers 5, but the base has 4"):
        FULL.train(request)
    assert not (tmp_path / "out").exists()


def untied_copy(tiny_dir: Path, tmp_path: Path) -> Path:
    """builtin:tiny with its own LM head (initialised at load; only its trainability matters)."""
    model = tmp_path / "untied"
    shutil.copytree(tiny_dir, model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": False}))
    return model


@pytest.mark.parametrize("tied", [True, False])
def test_the_head_trains_only_when_it_is_not_the_embedding(
    tiny_dir: Path, tmp_path: Path, tied: bool
) -> None:
    from transformers import AutoModelForCausalLM

    base = tiny_dir if tied else untied_copy(tiny_dir, tmp_path)
    model = AutoModelForCausalLM.from_pretrained(str(base))
    freezer = Freezer(layer_schedule(FreezeArgs(train_last_layers=1), 4))
    freezer.attach(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    layer_3 = {n for n in trainable if layer_of(n) == 3}
    assert len(layer_3) == 9 and all(layer_of(n) in (3, None) for n in trainable)
    assert "model.norm.weight" in trainable and "model.embed_tokens.weight" not in trainable
    assert ("lm_head.weight" in trainable) is (not tied)
    assert freezer.details()["lm_head"] == ("tied to the embeddings: frozen" if tied else "trained")
    only = trained_parts(model, layer_schedule(FreezeArgs(only="attention"), 4))
    assert all(".self_attn." in name for name in only.groups[0]), only.groups[0].keys()
    assert sum(p.numel() for p in only.groups[0].values()) == 4 * ATTENTION


# ---- training --------------------------------------------------------------------------------

TRAINING = {
    "max_steps": 4,
    "learning_rate": 1e-3,
    "lr_scheduler_type": "constant",
    "weight_decay": 0.1,  # a frozen weight handed to AdamW would decay even without a gradient
    "per_device_train_batch_size": 4,
}


def trained_names(result: TrainResult, base: dict[str, Any]) -> set[str]:
    return changed(base, weights(result.model_dir))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "trains", "count"),
    [
        (
            # checkpointing: the frozen embeddings' output must still carry gradients upward
            {"freeze": {"train_last_layers": 2}, "gradient_checkpointing": True},
            lambda n: layer_of(n) in (2, 3) or n == "model.norm.weight",
            2 * LAYER + FINAL_NORM,
        ),
        (
            {"freeze": {"train_last_layers": 1, "only": "attention"}},
            lambda n: layer_of(n) == 3 and ".self_attn." in n,
            ATTENTION,
        ),
        (
            {"freeze": {"only": "mlp"}, "packing": True},
            lambda n: ".mlp." in n,
            4 * MLP,
        ),
    ],
    ids=["last-2-checkpointed", "last-1-attention", "mlp-packed"],
)
def test_frozen_weights_stay_bit_identical(
    tiny_dir: Path, tmp_path: Path, args: dict[str, Any], trains: Any, count: int
) -> None:
    base = weights(tiny_dir)
    result = train("full", tiny_dir, tmp_path / "out", sft_rows(), **TRAINING, **args)
    expected = {name for name in base if trains(name)}
    assert trained_names(result, base) == expected
    assert (result.trainable_parameters, result.total_parameters) == (count, TOTAL)
    groups = result.details["freeze"]["groups"]
    assert len(groups) == 1 and groups[0]["from_step"] == 0
    assert groups[0]["parameters"] == count


@pytest.mark.slow
def test_gradual_unfreezing_trains_each_group_from_its_step(tiny_dir: Path, tmp_path: Path) -> None:
    """Every 2 steps one more layer, going down, over 6 steps: layer 3 (and the final norm)
    from the start, layer 2 after step 2, layer 1 after step 4; layer 0's turn (step 6) is the
    end, so it never trains. Each step's weights are read through the checkpoint hook."""
    base = weights(tiny_dir)
    snapshots: dict[int, dict[str, Any]] = {}

    def snapshot(checkpoint: Checkpoint) -> bool:
        state = checkpoint.model.state_dict()
        snapshots[checkpoint.step] = {n: state[n].detach().clone() for n in base}
        return False

    config = FULL.Config(**{**TRAINING, "max_steps": 6}, freeze={"unfreeze_every": 2})
    assert FULL.problems(config) == []
    request = TrainRequest(
        tiny_dir, sft_rows(), config, 0, tmp_path / "out", checkpoints=CheckpointHook(1, snapshot)
    )
    result = FULL.train(request)

    first_changed = {}
    for name in base:
        steps = [s for s in sorted(snapshots) if not snapshots[s][name].equal(base[name])]
        first_changed[name] = steps[0] if steps else None
    for name, step in first_changed.items():
        layer = layer_of(name)
        if layer == 3 or name == "model.norm.weight":
            assert step == 1, name
        elif layer == 2:
            assert step == 3, name  # unchanged after steps 1 and 2, changed by step 3
        elif layer == 1:
            assert step == 5, name
        else:
            assert step is None, name  # layer 0 and the (tied) embeddings
    assert changed(base, weights(result.model_dir)) == {n for n, s in first_changed.items() if s}

    assert result.trainable_parameters == 3 * LAYER + FINAL_NORM
    assert result.total_parameters == TOTAL
    groups = result.details["freeze"]["groups"]
    assert [(g["layers"], g["from_step"]) for g in groups] == [
        ([3], 0),
        ([2], 2),
        ([1], 4),
        ([0], None),
    ]
