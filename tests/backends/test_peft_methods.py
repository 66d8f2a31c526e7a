"""peft's methods beyond LoRA (backends/peft_methods.py) and LoRA's variants (rsLoRA, PiSSA,
OLoRA): their refusals, real training on builtin:tiny, the adapters loaded back by load_model
against the model in memory, and a suite run that trains and evaluates them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers.training import SUITE, problems, sft_rows, write
from pydantic import ValidationError

from harness.backends import BACKENDS, Checkpoint, CheckpointHook, TrainRequest, TrainResult
from harness.backends.peft_methods import PREFIX_TUNING_BROKEN
from harness.core.errors import HarnessError

METHODS = ["prompt_tuning", "prefix_tuning", "ia3", "llama_adapter"]
TEXTS = [row["prompt"] + row["completion"] for row in sft_rows()[:4]]


# ---- configuration: no training --------------------------------------------------------------


def test_methods_are_registered_and_their_defaults_train() -> None:
    assert set(METHODS) <= set(BACKENDS.names())
    for name in ("prompt_tuning", "ia3", "llama_adapter"):
        spec = BACKENDS.get(name)
        config = spec.Config()
        assert spec.problems(config) == [], name
        assert spec.required_fields(config) == {"prompt", "completion"}
    assert BACKENDS.get("ia3").trains_adapter(BACKENDS.get("ia3").Config())
    for name in ("prompt_tuning", "prefix_tuning", "llama_adapter"):
        assert not BACKENDS.get(name).trains_adapter(BACKENDS.get(name).Config()), name


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("prefix_tuning", {}, PREFIX_TUNING_BROKEN),
        ("prompt_tuning", {"padding_free": True}, "cannot be flattened"),
        ("prompt_tuning", {"padding_free": "auto"}, "cannot be flattened"),
        ("prompt_tuning", {"packing": True}, "cannot be packed"),
        ("prompt_tuning", {"init_text": "  "}, "init_text is blank"),
        ("ia3", {"feedforward_modules": ["down_proj"]}, "needs target_modules"),
        (
            "ia3",
            {"target_modules": ["k_proj"], "feedforward_modules": ["down_proj"]},
            "['down_proj'] are not in target_modules",
        ),
        ("ia3", {"target_modules": ["lm_head"]}, "lm_head"),
        ("lora", {"init_lora_weights": "pissa", "use_dora": True}, "cannot be combined"),
        ("qlora", {"init_lora_weights": "pissa"}, "needs a full-precision base"),
        ("qlora", {"init_lora_weights": "olora"}, "needs a full-precision base"),
        ("dpo", {"init_lora_weights": "pissa", "quantization": "4bit"}, "full-precision base"),
        ("dpo", {"init_lora_weights": "olora"}, "the residual, not the base"),
        ("grpo", {"init_lora_weights": "pissa_niter_4", "beta": 0.1}, "the residual"),
        ("lora", {"task": "classification", "init_lora_weights": "olora", "use_dora": True}, "use_dora"),
    ],
)  # fmt: skip
def test_impossible_settings_are_refused(name: str, args: dict[str, Any], expected: str) -> None:
    spec = BACKENDS.get(name)
    found = spec.problems(spec.Config(**args))
    assert any(expected in problem for problem in found), found


def test_lora_variants_that_can_train_pass() -> None:
    lora, grpo = BACKENDS.get("lora"), BACKENDS.get("grpo")
    for init in ("default", "gaussian", "pissa", "pissa_niter_4", "olora"):
        assert lora.problems(lora.Config(init_lora_weights=init, use_rslora=True)) == [], init
    # without a KL term GRPO holds no reference: PiSSA is fine there
    assert grpo.problems(grpo.Config(init_lora_weights="pissa", beta=0.0)) == []
    with pytest.raises(ValidationError, match="init_lora_weights"):
        lora.Config(init_lora_weights="pissa_niter_")
    with pytest.raises(ValidationError, match="init_lora_weights"):
        lora.Config(init_lora_weights="loftq")  # needs a quantized base and its own config


def test_validation_refuses_at_the_candidates_line(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
        - {name: p, backend: prompt_tuning, data: train, merge: true}
        - {name: x, backend: prefix_tuning, data: train}
        - {name: q, backend: qlora, data: train, args: {init_lora_weights: pissa}}
        - {name: f, backend: full, data: train, merge: true}
        """,
    )
    first = SUITE.count("\n") + 1  # the first candidate's line
    text = "\n".join(found)
    assert f":{first}:59: candidates[0].merge: `merge` is impossible: the prompt_tuning " in text
    assert "adapter (prompt_tuning) is no change of the base's weights" in text
    assert f":{first + 1}:5: candidates[1].args: prefix_tuning cannot be evaluated" in text
    assert f":{first + 2}:50: candidates[2].args: init_lora_weights: pissa needs a full" in text
    assert "candidates[3].merge: `merge` needs an adapter; with these args the full" in text
    assert len(found) == 4, found


def test_prefix_tuning_is_still_dropped_by_generate(tiny_dir: Path) -> None:
    """Why prefix_tuning is refused: with the installed transformers and peft, the first token
    `generate` picks ignores the prefix that the forward pass uses. When this test fails, the
    libraries were fixed: lift the refusal (PREFIX_TUNING_BROKEN in backends/peft_methods.py)."""
    import torch
    from peft import PrefixTuningConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_dir).eval()
    ids = torch.tensor([[5, 17, 33, 48, 60]])
    with torch.no_grad():
        plain = base(input_ids=ids).logits[0, -1]
        tuned = get_peft_model(
            base, PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=8)
        )
        forward = tuned(input_ids=ids).logits[0, -1]
        scores = tuned.generate(
            input_ids=ids, max_new_tokens=1, do_sample=False, output_scores=True,
            return_dict_in_generate=True,
        ).scores[0][0]  # fmt: skip
    assert not torch.allclose(forward, plain, atol=1e-3)  # the prefix changes the forward
    assert torch.allclose(scores, plain, atol=1e-4)  # generate scores the base


def test_llama_adapter_refuses_an_architecture_peft_lacks(tmp_path: Path) -> None:
    """Training refuses it too, before it starts (validation does so when it can read the
    base's config: tests/suite/test_base_problems.py)."""
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    spec = BACKENDS.get("llama_adapter")
    request = TrainRequest(tmp_path, sft_rows(), spec.Config(max_steps=1), 0, tmp_path / "out")
    with pytest.raises(HarnessError, match="not 'qwen2'; use prompt_tuning, ia3 or lora"):
        spec.train(request)


# ---- training --------------------------------------------------------------------------------


def logits(model: Any, tokenizer: Any) -> Any:
    """Logits of four training rows (prompt tuning's include its virtual positions)."""
    import torch

    batch = tokenizer(TEXTS, return_tensors="pt", padding=True).to(model.device)
    with torch.no_grad():
        return model(**batch).logits.detach().cpu()


def train_seeing_last_step(
    backend: str, base: Path, out: Path, **args: Any
) -> tuple[TrainResult, dict[str, Any]]:
    """Train; the checkpoint hook at the last step sees the model in memory: its logits and
    fingerprint are kept, to hold the saved adapter against."""
    from harness.models.fingerprint import fingerprint_model

    seen: dict[str, Any] = {}

    def keep(checkpoint: Checkpoint) -> bool:
        if checkpoint.step == checkpoint.total_steps:
            seen["logits"] = logits(checkpoint.model, checkpoint.tokenizer)
            seen["fingerprint"] = fingerprint_model(checkpoint.model)
        return False

    spec = BACKENDS.get(backend)
    config = spec.Config(**args)
    assert spec.problems(config) == []
    hook = CheckpointHook(every=1000, evaluate=keep)  # the last step only
    request = TrainRequest(base, sft_rows(), config, 0, out, checkpoints=hook)
    return spec.train(request), seen


@pytest.mark.slow
@pytest.mark.parametrize(
    ("backend", "args", "peft_type"),
    [
        ("prompt_tuning", {"num_virtual_tokens": 8, "init_text": "Answer with the capital"}, "PROMPT_TUNING"),
        ("ia3", {}, "IA3"),
        ("llama_adapter", {"adapter_len": 4}, "ADAPTION_PROMPT"),
    ],
)  # fmt: skip
def test_method_trains_a_small_adapter_that_loads_back_as_trained(
    backend: str, args: dict[str, Any], peft_type: str, tiny_dir: Path, tmp_path: Path
) -> None:
    from peft import PeftModel

    from harness.generation import Engine, GenerationSettings
    from harness.models.loading import load_model
    from harness.plan._estimate import adapter_parameters, model_shape
    from harness.plan._suite import lora_shape, model_config

    result, seen = train_seeing_last_step(
        backend, tiny_dir, tmp_path, max_steps=3, learning_rate=3e-2, **args
    )
    assert result.is_adapter and 0 < result.trainable_parameters * 100 < result.total_parameters
    spec = BACKENDS.get(backend)
    planned = lora_shape(spec.memory_profile(spec.Config(**args)))
    assert planned is not None  # the plan counts what peft trained
    shape = model_shape(model_config("builtin:tiny"))
    assert adapter_parameters(shape, planned) == result.trainable_parameters
    assert result.details["peft_type"] == peft_type
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["peft_type"] == peft_type and config["base_model_name_or_path"] == str(tiny_dir)

    loaded = load_model(str(tmp_path))
    base = load_model(str(tiny_dir))
    assert isinstance(loaded.model, PeftModel)
    trained = seen["logits"]
    assert logits(loaded.model, loaded.tokenizer).equal(trained)  # as trained
    plain = logits(base.model, base.tokenizer)  # (prompt tuning's virtual positions come first)
    assert (trained[:, -plain.shape[1] :] - plain).abs().max() > 1e-3
    # a checkpoint's cached outputs are found again by the saved model
    assert loaded.fingerprint == seen["fingerprint"] != base.fingerprint
    outputs = Engine(loaded).generate(TEXTS[:2], GenerationSettings(max_new_tokens=4))
    assert len(outputs) == 2 and all(isinstance(text, str) for text in outputs)


@pytest.mark.slow
@pytest.mark.parametrize("init", ["pissa_niter_4", "olora"])
def test_pissa_and_olora_adapters_apply_to_the_untouched_base(
    init: str, tiny_dir: Path, tmp_path: Path
) -> None:
    """The adapter trains on a residual base (W - A0 B0); saved as its change to the original
    base it reproduces the trained model there, unmerged and merged. (pissa_niter_K's SVD is
    randomised: an adapter saved as trained would be re-initialised against another residual.)"""
    from safetensors.torch import load_file

    from harness.backends.common import merge_adapter
    from harness.models.loading import load_model

    result, seen = train_seeing_last_step(
        "lora", tiny_dir, tmp_path / "adapter", max_steps=3, learning_rate=1e-2, r=4,
        init_lora_weights=init, use_rslora=True,
    )  # fmt: skip
    config = json.loads((result.model_dir / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["init_lora_weights"] is True  # plain LoRA, rank 2r
    loaded = load_model(str(result.model_dir))
    torch_close(logits(loaded.model, loaded.tokenizer), seen["logits"])
    base = load_file(str(tiny_dir / "model.safetensors"))
    for name, parameter in loaded.model.get_base_model().named_parameters():
        key = name.replace(".base_layer", "")
        if "lora_" not in name and key in base:
            assert parameter.detach().equal(base[key]), name  # the base as it is on disk
    merged = load_model(str(merge_adapter(result.model_dir, tmp_path / "merged")))
    torch_close(logits(merged.model, merged.tokenizer), seen["logits"])


@pytest.mark.slow
def test_pissa_on_a_classifier_keeps_its_trained_head(tiny_dir: Path, tmp_path: Path) -> None:
    """peft's conversion saves LoRA's A and B only: the head trained in full (modules_to_save)
    is put back, else the classifier loads with a fresh head."""
    from harness.models.loading import load_model

    rows = [{"text": text, "label": i % 2} for i, text in enumerate(TEXTS * 2)]
    seen: dict[str, Any] = {}

    def keep(checkpoint: Checkpoint) -> bool:
        seen["logits"] = logits(checkpoint.model, checkpoint.tokenizer)
        return False

    spec = BACKENDS.get("lora")
    config = spec.Config(
        task="classification", r=2, init_lora_weights="pissa", max_steps=2, learning_rate=1e-2
    )
    assert spec.problems(config) == []
    hook = CheckpointHook(every=1000, evaluate=keep)
    result = spec.train(TrainRequest(tiny_dir, rows, config, 0, tmp_path, checkpoints=hook))
    loaded = load_model(str(result.model_dir))
    assert loaded.task == "classification"
    torch_close(logits(loaded.model, loaded.tokenizer), seen["logits"])


def torch_close(actual: Any, expected: Any) -> None:
    import torch

    assert (actual - expected).abs().max() < 1e-4
    assert torch.allclose(actual, expected, atol=1e-4)


@pytest.mark.slow
def test_a_suite_trains_and_evaluates_each_method(tmp_path: Path) -> None:
    from harness.run import run_suite
    from harness.store import Store
    from harness.suite import load_suite

    steps = "max_steps: 3, learning_rate: 0.01"
    suite = load_suite(
        write(
            tmp_path,
            f"""\
            - {{name: prompt, backend: prompt_tuning, data: train, args: {{{steps}, num_virtual_tokens: 8}}}}
            - {{name: ia3, backend: ia3, data: train, merge: true, args: {{{steps}}}}}
            - {{name: adapter, backend: llama_adapter, data: train, args: {{{steps}, adapter_len: 4}}}}
            - {{name: pissa, backend: lora, data: train, merge: true, args: {{{steps}, r: 2, init_lora_weights: pissa}}}}
            """,
        )
    )
    result = run_suite(suite, Store(tmp_path / "h.duckdb"), retrain=True)
    records = {c.record.name: c for c in result.candidates}
    assert set(records) == {"prompt", "ia3", "ia3+merged", "adapter", "pissa", "pissa+merged"}
    for name in ("prompt", "ia3", "adapter", "pissa"):
        candidate = records[name]
        assert candidate.verdict != "error", (name, candidate.record.error)
        assert candidate.metrics, name  # evaluated on the adapter
        training = candidate.record.info["training"]
        assert training["trainable_parameters"] * 20 < training["total_parameters"], name
    assert records["prompt"].record.info["training"]["method"]["num_virtual_tokens"] == 8
    assert records["ia3"].record.info["training"]["method"]["target_modules"] == [
        "down_proj", "k_proj", "v_proj",
    ]  # fmt: skip
    for name in ("ia3", "pissa"):  # merged into the base, they answer as the adapter did
        assert records[name].record.info["merge_agreement"]["rate"] == 1.0
        assert records[f"{name}+merged"].verdict != "error"
