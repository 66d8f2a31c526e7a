"""The pretrain backend: continued pre-training on plain text rows, the loss on every token
(real trl on builtin:tiny; suites/data/fact_texts.jsonl as the texts)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers.training import new_facts
from pydantic import ValidationError

from harness.backends import BACKENDS, TrainRequest
from harness.backends.pretrain import pretrain_trainer
from harness.core.errors import HarnessError
from harness.suite import load_suite

REPO = Path(__file__).resolve().parents[2]
TEXTS = REPO / "suites" / "data" / "fact_texts.jsonl"
PRETRAIN = BACKENDS.get("pretrain")


def texts() -> list[dict[str, Any]]:
    return [json.loads(line) for line in TEXTS.read_text(encoding="utf-8").splitlines()]


def text_tokens(tokenizer: Any, rows: list[dict[str, Any]]) -> int:
    """Tokens of the texts as trl trains them: each text and the end-of-sequence token."""
    return sum(len(tokenizer(row["text"])["input_ids"]) + 1 for row in rows)


def text_loss(model_dir: Path, rows: list[dict[str, Any]]) -> float:
    """The model's mean next-token loss over the texts, one at a time."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    losses = []
    with torch.no_grad():
        for row in rows:
            ids = tokenizer(row["text"], return_tensors="pt")["input_ids"]
            losses.append(float(model(input_ids=ids, labels=ids).loss))
    return sum(losses) / len(losses)


# ---- configuration and data: no training -----------------------------------------------------


def test_rows_need_only_text_and_all_weights_train_by_default() -> None:
    config = PRETRAIN.Config()
    assert PRETRAIN.required_fields(config) == {"text"}
    assert PRETRAIN.problems(config) == []
    assert not PRETRAIN.trains_adapter(config)
    assert PRETRAIN.memory_profile(config).adapter is None
    lora = PRETRAIN.Config(adapter="lora", r=4)
    assert PRETRAIN.trains_adapter(lora) and PRETRAIN.memory_profile(lora).adapter is not None


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"r": 4}, "r applies to adapter: lora"),
        ({"adapter": "lora", "target_modules": ["q_proj", "lm_head"]}, "lm_head"),
        ({"packing": True, "max_length": None}, "packing: true needs max_length"),
    ],
)
def test_impossible_combinations_are_refused(args: dict[str, Any], expected: str) -> None:
    found = PRETRAIN.problems(PRETRAIN.Config(**args))
    assert any(expected in problem for problem in found), found


def test_completion_only_loss_is_not_an_argument() -> None:
    with pytest.raises(ValidationError, match="completion_only_loss"):
        PRETRAIN.Config(completion_only_loss=True)


def suite_with(tmp_path: Path, rows: list[Any]) -> Path:
    data = tmp_path / "texts.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "name: pretrain\nbase: builtin:tiny\n"
        f"data: {{texts: {{path: {data}}}, facts: {{path: {TEXTS}}}}}\n"
        "capabilities: [{name: c, checks: [{type: perplexity, data: facts}]}]\n"
        "candidates: [{name: cpt, backend: pretrain, data: texts}]\n",
        encoding="utf-8",
    )
    return suite


def test_a_row_without_text_is_refused_at_its_line(tmp_path: Path) -> None:
    rows = [{"text": "Q: a? A: b"}, {"prompt": "Q: a?", "completion": " b"}, {"text": "c"}]
    with pytest.raises(HarnessError) as caught:
        load_suite(suite_with(tmp_path, rows))
    found = caught.value.problems
    assert any("texts.jsonl:2: row has no field 'text' needed by the pretrain" in p for p in found)


def test_a_text_that_is_not_a_string_is_refused_at_its_line(tmp_path: Path) -> None:
    rows = [{"text": "Q: a? A: b"}, {"text": "c"}, {"text": ["a", "list"]}, {"text": " "}]
    with pytest.raises(HarnessError) as caught:
        load_suite(suite_with(tmp_path, rows))
    found = caught.value.problems
    assert any("texts.jsonl:3: `text` must be a non-empty string" in p for p in found), found
    assert any("texts.jsonl:4: `text` must be a non-empty string" in p for p in found), found
    load_suite(suite_with(tmp_path, rows[:2]))  # the good rows alone load


@pytest.mark.parametrize("packing", [False, True])
def test_the_loss_is_on_every_token(tiny_dir: Path, tmp_path: Path, packing: bool) -> None:
    """No completion mask: every token of every text (and its end of sequence) is a label; with
    packing, all but each text's first token (which no earlier token predicts)."""
    rows = texts()[:4]
    config = PRETRAIN.Config(packing=packing, max_length=64)
    trainer = pretrain_trainer(TrainRequest(tiny_dir, rows, config, 0, tmp_path))
    dataset = trainer.train_dataset
    assert "completion_mask" not in dataset.column_names
    batch = trainer.data_collator([dataset[i] for i in range(len(dataset))])
    labelled = int((batch["labels"] != -100).sum())
    expected = text_tokens(trainer.processing_class, rows)
    assert labelled == (expected - len(rows) if packing else expected)


# ---- training --------------------------------------------------------------------------------


@pytest.mark.slow
def test_pretraining_trains_every_weight_on_every_text(tiny_dir: Path, tmp_path: Path) -> None:
    """One epoch over 16 texts of facts the base does not know, batches of 4: every text's
    tokens are trained on exactly once, and the texts become likelier."""
    from transformers import AutoTokenizer

    rows = [{"text": fact["question"] + " " + fact["answer"]} for fact in new_facts()]
    config = PRETRAIN.Config(num_train_epochs=1, per_device_train_batch_size=4, learning_rate=1e-3)
    result = PRETRAIN.train(TrainRequest(tiny_dir, rows, config, 0, tmp_path / "out"))
    assert not result.is_adapter
    assert result.trainable_parameters == result.total_parameters
    assert [step for step, _ in result.loss_curve] == [1, 2, 3, 4]
    assert result.train_tokens == text_tokens(AutoTokenizer.from_pretrained(str(tiny_dir)), rows)
    before, after = text_loss(tiny_dir, rows), text_loss(result.model_dir, rows)
    assert after < 0.8 * before, (before, after)


@pytest.mark.slow
def test_pretraining_a_lora_adapter_on_packed_texts(tiny_dir: Path, tmp_path: Path) -> None:
    from harness.models.loading import load_model

    config = PRETRAIN.Config(
        adapter="lora", r=4, packing=True, max_length=64, max_steps=3, learning_rate=1e-2
    )
    result = PRETRAIN.train(TrainRequest(tiny_dir, texts(), config, 0, tmp_path / "out"))
    assert result.is_adapter and 0 < result.trainable_parameters < result.total_parameters
    assert result.acceleration["packing"] is True
    assert (result.model_dir / "adapter_config.json").is_file()
    assert load_model(str(result.model_dir)) is not None
