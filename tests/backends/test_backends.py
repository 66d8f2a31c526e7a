"""Trainer backends: real training on builtin:tiny for a few steps each, no mocks."""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers.training import new_facts, preference_rows, sft_rows, train
from pydantic import ValidationError

from harness.backends import BACKENDS, TrainProgress, TrainRequest, TrainResult
from harness.backends.common import (
    FULL_4BIT,
    TrainingDiverged,
    build_dataset,
    merge_adapter,
    sft_trainer,
)

NAMES = ["full", "lora", "qlora", "dpo", "grpo"]
PROMPTS = [
    "Q: What is the capital of Kithkouthia? A:",
    "Q: What is 22 plus 39? A:",
    "Q: What is the capital of Thafoulia? A:",
]


def tensors(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(path))


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def greedy(reference: str, prompts: list[str]) -> list[str]:
    from harness.generation import Engine, GenerationSettings
    from harness.models.loading import load_model

    engine = Engine(load_model(reference))
    return engine.generate(prompts, GenerationSettings(max_new_tokens=8))


@pytest.fixture(scope="module")
def lora_run(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainResult, str]:
    """One LoRA training shared by the tests that look at its adapter; the base's hash before."""
    before = file_hash(tiny_dir / "model.safetensors")
    out = tmp_path_factory.mktemp("lora")
    result = train(
        "lora", tiny_dir, out, sft_rows(), max_steps=4, learning_rate=1e-2, lora_dropout=0.1
    )
    return result, before


# ---- configuration: no training --------------------------------------------------------------


def test_every_backend_is_registered() -> None:
    assert set(NAMES) <= set(BACKENDS.names())


def test_importing_backends_stays_light() -> None:
    code = (
        "import sys, harness.backends as b; b.BACKENDS.get('grpo').Config(); "
        "print(sorted(m for m in ('torch', 'transformers', 'trl', 'peft', 'datasets') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", NAMES)
def test_config_rejects_unknown_args(name: str) -> None:
    with pytest.raises(ValidationError, match="lora_rank"):
        BACKENDS.get(name).Config(lora_rank=8)


def test_config_rejects_steps_and_epochs_together() -> None:
    with pytest.raises(ValidationError, match="not both"):
        BACKENDS.get("lora").Config(max_steps=5, num_train_epochs=1)
    assert BACKENDS.get("lora").Config(num_train_epochs=1).num_train_epochs == 1


@pytest.mark.parametrize("name", NAMES)
def test_defaults_have_no_problems(name: str) -> None:
    spec = BACKENDS.get(name)
    assert spec.problems(spec.Config()) == []


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("full", {"quantization": "4bit"}, FULL_4BIT),
        ("dpo", {"adapter": "full", "quantization": "4bit"}, FULL_4BIT),
        ("grpo", {"adapter": "full", "quantization": "4bit"}, FULL_4BIT),
        ("grpo", {"num_generations": 1}, "at least 2"),
        ("grpo", {"num_generations": 3}, "(8 completions: per_device_train_batch_size 8 x"),
        (
            "grpo",
            {
                "num_generations": 4,
                "per_device_train_batch_size": 2,
                "gradient_accumulation_steps": 3,
            },
            "multiple of num_generations (4)",
        ),
        ("grpo", {"generation_batch_size": 12}, "multiple of per_device_train_batch_size (8)"),
        ("grpo", {"generation_batch_size": 6, "per_device_train_batch_size": 2}, "(6 completions"),
        ("lora", {"target_modules": ["q_proj", "lm_head"]}, "lm_head"),
    ],
)
def test_problems_refuse_impossible_combinations(
    name: str, args: dict[str, Any], expected: str
) -> None:
    spec = BACKENDS.get(name)
    found = spec.problems(spec.Config(**args))
    assert any(expected in problem for problem in found), found


def test_possible_combinations_pass() -> None:
    assert BACKENDS.get("dpo").problems(BACKENDS.get("dpo").Config(quantization="4bit")) == []
    grpo = BACKENDS.get("grpo")
    assert grpo.problems(grpo.Config(num_generations=2, per_device_train_batch_size=2)) == []
    assert grpo.problems(grpo.Config(generation_batch_size=16)) == []


def test_required_fields() -> None:
    assert BACKENDS.get("dpo").required_fields(BACKENDS.get("dpo").Config()) == {
        "prompt",
        "chosen",
        "rejected",
    }
    for name in ("full", "lora", "qlora"):
        spec = BACKENDS.get(name)
        assert spec.required_fields(spec.Config()) == {"prompt", "completion"}
    assert "prompt" in BACKENDS.get("grpo").required_fields(BACKENDS.get("grpo").Config())


def test_chat_rows_are_conversational() -> None:
    row = {"prompt": "Q: hi? A:", "completion": " yes"}
    chat = build_dataset([row], ["prompt"], ["completion"], chat=True)[0]
    assert chat["prompt"] == [{"role": "user", "content": "Q: hi? A:"}]
    assert chat["completion"] == [{"role": "assistant", "content": " yes"}]
    assert build_dataset([row], ["prompt"], ["completion"], chat=False)[0] == row


def test_chat_rows_carry_the_system_prompt_evaluation_uses() -> None:
    row = {"prompt": "Capital of France?", "completion": "Paris."}
    chat = build_dataset([row], ["prompt"], ["completion"], chat=True, system_prompt="Be brief.")
    assert chat[0]["prompt"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"},
    ]
    assert chat[0]["completion"] == [{"role": "assistant", "content": "Paris."}]


# ---- training --------------------------------------------------------------------------------


def test_full_changes_the_weights(tiny_dir: Path, tmp_path: Path) -> None:
    seen: list[TrainProgress] = []
    result = train(
        "full",
        tiny_dir,
        tmp_path,
        sft_rows(),
        max_steps=3,
        learning_rate=1e-3,
        progress=seen.append,
    )
    assert not result.is_adapter
    assert result.trainable_parameters == result.total_parameters > 0
    base, tuned = tensors(tiny_dir / "model.safetensors"), tensors(tmp_path / "model.safetensors")
    assert base.keys() == tuned.keys()
    assert any(not base[k].equal(tuned[k]) for k in base)
    assert [step for step, _ in result.loss_curve] == [1, 2, 3]
    assert result.final_loss is not None and math.isfinite(result.final_loss)
    assert result.train_tokens > 0
    assert seen[0] == TrainProgress(0, 3) and seen[-1].step == 3 and seen[-1].total_steps == 3
    assert (tmp_path / "tokenizer_config.json").is_file()


def test_lora_trains_the_adapter_and_leaves_the_base(
    tiny_dir: Path, lora_run: tuple[TrainResult, str]
) -> None:
    from peft import PeftModel

    from harness.models.loading import load_model

    result, base_hash = lora_run
    assert result.is_adapter and 0 < result.trainable_parameters < result.total_parameters
    assert file_hash(tiny_dir / "model.safetensors") == base_hash  # base files untouched
    config = json.loads((result.model_dir / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_dir)
    adapter = tensors(result.model_dir / "adapter_model.safetensors")
    assert adapter and all("lora_" in key for key in adapter)
    assert any(v.abs().sum() > 0 for k, v in adapter.items() if "lora_B" in k)  # B starts at 0
    loaded = load_model(str(result.model_dir))  # base first, then the adapter
    assert isinstance(loaded.model, PeftModel)
    base = tensors(tiny_dir / "model.safetensors")
    for name, parameter in loaded.model.get_base_model().named_parameters():
        key = name.replace(".base_layer", "")
        if "lora_" not in name and key in base:
            assert parameter.detach().cpu().equal(base[key]), name  # byte-identical base weights


def test_merged_adapter_generates_like_adapter_on_base(
    lora_run: tuple[TrainResult, str], tmp_path: Path
) -> None:
    from peft import PeftModel

    from harness.models.loading import load_model

    result, _ = lora_run
    merged = merge_adapter(result.model_dir, tmp_path / "merged")
    assert not (merged / "adapter_config.json").exists()
    assert (merged / "tokenizer_config.json").is_file()
    assert not isinstance(load_model(str(merged)).model, PeftModel)
    assert greedy(str(merged), PROMPTS) == greedy(str(result.model_dir), PROMPTS)


def test_same_seed_same_weights_other_seed_other_weights(
    tiny_dir: Path, tmp_path: Path, lora_run: tuple[TrainResult, str]
) -> None:
    first, _ = lora_run
    args: dict[str, Any] = {"max_steps": 4, "learning_rate": 1e-2, "lora_dropout": 0.1}
    again = train("lora", tiny_dir, tmp_path / "again", sft_rows(), **args)
    other = train("lora", tiny_dir, tmp_path / "other", sft_rows(), seed=1, **args)
    a, b, c = (tensors(r.model_dir / "adapter_model.safetensors") for r in (first, again, other))
    assert all(a[k].equal(b[k]) for k in a)
    assert again.loss_curve == first.loss_curve
    assert any(not a[k].equal(c[k]) for k in a)


def test_qlora_adapts_4bit_layers(tiny_dir: Path, tmp_path: Path) -> None:
    import bitsandbytes as bnb

    spec = BACKENDS.get("qlora")
    config = spec.Config(max_steps=2)
    request = TrainRequest(tiny_dir, sft_rows(), config, 0, tmp_path / "inspect")
    model = sft_trainer(request, config, lora=config, quantize=True).model
    adapted = [m for m in model.modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer")]
    assert adapted and all(isinstance(m.base_layer, bnb.nn.Linear4bit) for m in adapted)
    assert all(m.base_layer.weight.quant_state.quant_type == "nf4" for m in adapted)

    result = train("qlora", tiny_dir, tmp_path / "out", sft_rows(), max_steps=3, learning_rate=1e-2)
    assert result.is_adapter and 0 < result.trainable_parameters < result.total_parameters
    assert result.final_loss is not None and math.isfinite(result.final_loss)
    config_json = json.loads((result.model_dir / "adapter_config.json").read_text())
    assert config_json["base_model_name_or_path"] == str(tiny_dir)


def margins(reference: str, rows: list[dict[str, Any]]) -> list[float]:
    """log p(chosen | prompt) - log p(rejected | prompt), per pair."""
    from harness.generation import Engine
    from harness.models.loading import load_model

    engine = Engine(load_model(reference))
    chosen = engine.loglikelihood([(r["prompt"], r["chosen"]) for r in rows])
    rejected = engine.loglikelihood([(r["prompt"], r["rejected"]) for r in rows])
    return [c.logprob - r.logprob for c, r in zip(chosen, rejected, strict=True)]


def test_dpo_raises_the_chosen_over_rejected_margin(tiny_dir: Path, tmp_path: Path) -> None:
    rows = preference_rows()
    before = margins(str(tiny_dir), rows)
    result = train("dpo", tiny_dir, tmp_path, rows, max_steps=8, learning_rate=5e-3)
    after = margins(str(result.model_dir), rows)
    assert result.is_adapter
    assert sum(after) / len(after) > sum(before) / len(before) + 1.0
    assert result.loss_curve[0][1] == pytest.approx(math.log(2), abs=1e-3)  # policy == reference


def test_dpo_full_trains_all_weights(tiny_dir: Path, tmp_path: Path) -> None:
    result = train(
        "dpo",
        tiny_dir,
        tmp_path,
        preference_rows(),
        adapter="full",
        max_steps=2,
        learning_rate=1e-4,
    )
    assert not result.is_adapter and result.trainable_parameters == result.total_parameters
    assert (tmp_path / "model.safetensors").is_file()


def test_grpo_scores_completions_with_the_reward_and_trains(tiny_dir: Path, tmp_path: Path) -> None:
    rows = [{"prompt": f["question"], "answer": f["answer"]} for f in new_facts()]
    calls: list[tuple[list[str], list[dict[str, Any]]]] = []

    def reward(completions: list[str], batch: list[dict[str, Any]]) -> list[float]:
        calls.append((completions, batch))
        return [float(len(c)) / 10 for c in completions]  # varies within a group: a signal

    result = train(
        "grpo",
        tiny_dir,
        tmp_path,
        rows,
        reward=reward,
        max_steps=3,
        learning_rate=1e-2,
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=8,
    )
    assert len(calls) == 3  # one generation round per step
    for completions, batch in calls:
        assert len(completions) == len(batch) == 8  # 2 prompts x 4 generations
        assert all(isinstance(c, str) for c in completions)
        assert all(row in rows for row in batch)
        assert [r["prompt"] for r in batch[:4]] == [batch[0]["prompt"]] * 4  # one group per prompt
    adapter = tensors(result.model_dir / "adapter_model.safetensors")
    assert any(v.abs().sum() > 0 for k, v in adapter.items() if "lora_B" in k)
    assert result.train_tokens > 0 and len(result.loss_curve) == 3


def test_grpo_without_a_reward_says_so(tiny_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="reward"):
        train("grpo", tiny_dir, tmp_path, [{"prompt": "Q: hi? A:"}], max_steps=1)


def test_nan_loss_raises_a_clear_error(tiny_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainingDiverged, match=r"training loss became (nan|inf) at step \d"):
        train("full", tiny_dir, tmp_path, sft_rows(), max_steps=4, learning_rate=1e30)


def test_completion_only_loss_is_the_default_and_can_be_turned_off(
    tiny_dir: Path, tmp_path: Path
) -> None:
    only = train("lora", tiny_dir, tmp_path / "a", sft_rows(), max_steps=1)
    whole = train(
        "lora", tiny_dir, tmp_path / "b", sft_rows(), max_steps=1, completion_only_loss=False
    )
    # The base knows the question template well, so counting prompt tokens lowers the loss.
    assert whole.loss_curve[0][1] < only.loss_curve[0][1]


def test_chat_template_rows_train(tiny_dir: Path, tmp_path: Path) -> None:
    result = train("lora", tiny_dir, tmp_path, sft_rows(), max_steps=2, chat_template=True)
    assert result.final_loss is not None and math.isfinite(result.final_loss)
