"""The optional vLLM engine, without vLLM: engine selection, validation, cache keys, and the pure
pieces of a vLLM call. vLLM itself is never imported here (nor faked); the path that calls it
needs a CUDA machine with vllm installed and is not exercised by these tests."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import harness
from harness.checks import GenerationOverride
from harness.core.errors import HarnessError
from harness.generation import Engine, GenerationSettings, vllm_installed
from harness.generation._cache import DictCache
from harness.generation._engine import generation_key as key_settings
from harness.generation._tokens import decode_new, encode_prompts
from harness.generation._vllm import (
    LORA_RANKS,
    VllmGenerator,
    VllmServing,
    VllmStartError,
    VllmTarget,
    VllmUnavailable,
    checkpoint_dtype,
    llm_kwargs,
    lora_problem,
    lora_rank_bucket,
    memory_fraction,
    request_seed,
    sampling_kwargs,
    select_engine,
    serving_target,
    stopped_early,
)
from harness.models import LazyModel, LoadedModel
from harness.suite import load_suite
from harness.suite._schema import GenerationConfig

no_vllm = pytest.mark.skipif(vllm_installed(), reason="checks behaviour without the vllm package")


@pytest.fixture(scope="module")
def tiny(tiny_dir: Path) -> LoadedModel:
    from harness.models.loading import load_model

    return load_model(str(tiny_dir), device="cpu")


def never_loads() -> LoadedModel:
    raise AssertionError("the weights were loaded")


# --- Which engine ---------------------------------------------------------------------------


def _never() -> Any:
    raise AssertionError("looked at although an earlier condition already decided")


def test_auto_falls_back_to_transformers_and_says_why() -> None:
    target = VllmTarget("/m", "/m")
    assert select_engine("auto", installed=lambda: False, cuda=_never, target=_never) == (
        "vllm is not installed"
    )
    assert "no CUDA device" in str(
        select_engine("auto", installed=lambda: True, cuda=lambda: False, target=_never)
    )
    why = select_engine(
        "auto", installed=lambda: True, cuda=lambda: True, target=lambda: "a random: preset"
    )
    assert why == "a random: preset"
    chosen = select_engine("auto", installed=lambda: True, cuda=lambda: True, target=lambda: target)
    assert chosen == target
    assert select_engine("transformers", installed=_never, cuda=_never, target=_never) == (
        "engine: transformers"
    )


def test_explicit_vllm_insists() -> None:
    with pytest.raises(VllmUnavailable, match=r"needs the vllm package \(pip install"):
        select_engine("vllm", installed=lambda: False, cuda=_never, target=_never)
    with pytest.raises(VllmUnavailable, match="cannot serve this model: a random: preset"):
        select_engine(
            "vllm", installed=lambda: True, cuda=_never, target=lambda: "a random: preset"
        )
    # Explicit vllm does not ask for CUDA: vLLM has other platforms, and says so itself.
    target = VllmTarget("/m", "/m")
    assert select_engine("vllm", installed=lambda: True, cuda=_never, target=lambda: target) == (
        target
    )


@no_vllm
def test_auto_without_vllm_generates_with_transformers(
    tiny: LoadedModel, caplog: pytest.LogCaptureFixture
) -> None:
    prompts = ["Q: What is 2 plus 3? A:", ""]
    caplog.set_level(logging.DEBUG, logger="harness.generation._engine")
    engine = Engine(tiny)
    auto = engine.generate(prompts, GenerationSettings(max_new_tokens=6, engine="auto"))
    plain = Engine(tiny).generate(prompts, GenerationSettings(max_new_tokens=6))
    assert auto == plain
    assert engine.generation_engine == "transformers"
    assert any("transformers generates (vllm is not installed)" in m for m in caplog.messages)


@no_vllm
def test_explicit_vllm_without_the_package_is_a_run_error(tiny: LoadedModel) -> None:
    with pytest.raises(VllmUnavailable, match="pip install 'harness\\[vllm\\]'"):
        Engine(tiny).generate(["x"], GenerationSettings(engine="vllm"))


@no_vllm
def test_serving_says_why_once_and_loads_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="harness.generation._engine")
    serving = VllmServing(LazyModel("builtin:tiny", "fp", None, never_loads), hf_loaded=_never)
    assert serving.generator("auto") is None
    assert serving.generator("auto") is None
    assert sum("vllm is not installed" in m for m in caplog.messages) == 1
    serving.close()  # nothing started: nothing to stop


# --- Suite validation -----------------------------------------------------------------------

SUITE = """\
name: demo
base: builtin:tiny
generation: {max_new_tokens: 4, engine: ENGINE}
capabilities:
  - name: sums
    checks:
      - type: exact
        generation: {engine: CHECK}
        cases:
          - {prompt: "1+1=", expected: "2"}
"""


def write_suite(tmp_path: Path, engine: str, check: str = "auto") -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE.replace("ENGINE", engine).replace("CHECK", check))
    return path


def test_engine_setting_defaults_to_auto_and_reaches_the_settings(tmp_path: Path) -> None:
    from harness.evaluation._evaluate import generation_settings

    assert GenerationConfig().engine == "auto"
    suite = load_suite(write_suite(tmp_path, "transformers", "auto"))
    assert suite.spec.generation.engine == "transformers"
    check = suite.checks[0].spec.generation
    assert generation_settings(suite.spec.generation, check).engine == "auto"
    override = GenerationOverride(max_new_tokens=2)  # no engine: the suite's stands
    assert generation_settings(suite.spec.generation, override).engine == "transformers"
    with pytest.raises(HarnessError) as caught:
        load_suite(write_suite(tmp_path, "vlm"))
    assert ":3:" in caught.value.problems[0] and "generation.engine" in caught.value.problems[0]


@no_vllm
def test_explicit_vllm_is_refused_at_its_line_without_the_package(tmp_path: Path) -> None:
    path = write_suite(tmp_path, "vllm", "vllm")
    with pytest.raises(HarnessError) as caught:
        load_suite(path)
    found = caught.value.problems
    assert len(found) == 2
    assert found[0].startswith(f"{path}:3:41: generation.engine: engine vllm needs the vllm")
    assert found[1].startswith(f"{path}:8:30: capabilities[0].checks[0].generation.engine: ")
    assert "pip install 'harness[vllm]'" in found[0]
    # `harness gate` decides from stored results: it runs no model and needs no vllm.
    assert load_suite(path, resolve_models=False).spec.generation.engine == "vllm"


@no_vllm
def test_validate_exits_2_for_vllm_without_the_package(tmp_path: Path) -> None:
    path = write_suite(tmp_path, "vllm")
    result = subprocess.run(
        [sys.executable, "-m", "harness.cli", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"{path}:3:41: generation.engine: engine vllm needs the vllm package" in result.stderr


# --- Cache keys -----------------------------------------------------------------------------

OLD_FIELDS = ["max_new_tokens", "stop", "chat_template", "system_prompt", "temperature", "sample"]


def test_transformers_cache_keys_are_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys of stored caches stay valid: hashes computed by the code before the vLLM engine."""
    monkeypatch.setattr(harness, "__version__", "0.1.0")
    engine = Engine(LazyModel("builtin:none", "fp-test", None, never_loads))
    greedy = GenerationSettings(max_new_tokens=12, stop=("\n",))
    sampled = GenerationSettings(temperature=0.7, sample=2, seed=5)
    assert list(key_settings(greedy)) == [*OLD_FIELDS, "seed"]
    prompt = "Q: 2+2? A:"
    before = "ed2e23371ea0fbf28d7a7533ef9170ee8504166eea922f0243eaed0a15c28f11"
    assert engine._key("generate", key_settings(greedy), prompt) == before
    # Sampled outputs cached before samples were seeded per prompt are not reused.
    before = "328c8569ee243a8a5d766ce77c4908d319332ec6ffc74ec62abfc7ade4438e81"
    assert key_settings(sampled)["sampling"] == "per-prompt"
    assert engine._key("generate", key_settings(sampled), prompt) != before
    # Whatever was asked for, a transformers generation has the same key; vLLM's differs.
    for asked in ("auto", "vllm"):
        assert key_settings(GenerationSettings(max_new_tokens=12, engine=asked)) == key_settings(
            greedy
        )
    assert key_settings(greedy, "vllm") == key_settings(greedy) | {"engine": "vllm"}


def test_a_stored_transformers_output_is_served_without_loading() -> None:
    cache = DictCache()
    lazy = LazyModel("builtin:none", "fp-test", None, never_loads)
    settings = GenerationSettings(max_new_tokens=12)
    old_dict = {f: getattr(settings, f) for f in [*OLD_FIELDS, "seed"]}
    stored = Engine(lazy)._key("generate", old_dict, "Q: hi? A:")
    cache.data[("generate", stored)] = "stored answer"
    engine = Engine(lazy, cache)
    assert engine.generate(["Q: hi? A:"], settings) == ["stored answer"]
    assert not engine.loaded and engine.generation_engine == "transformers"


# --- Pure pieces of a vLLM call --------------------------------------------------------------


def test_greedy_sampling_kwargs_match_the_transformers_generation_config() -> None:
    settings = GenerationSettings(max_new_tokens=7, stop=("\n",), engine="vllm")
    kwargs = sampling_kwargs(settings, eos_token_id=0, prompt=[5, 6])
    assert kwargs == {
        "n": 1,
        "max_tokens": 7,
        "temperature": 0.0,
        "top_p": 1.0,
        "min_p": 0.0,
        "repetition_penalty": 1.0,
        "ignore_eos": True,
        "stop_token_ids": [0],
        "stop": ["\n"],
        "detokenize": True,
        "skip_special_tokens": True,
    }
    bare = sampling_kwargs(GenerationSettings(stop=()), eos_token_id=None, prompt=[1])
    assert bare["stop"] == [] and bare["detokenize"] is False and bare["stop_token_ids"] == []
    # An empty stop string stops transformers after one token (and vLLM refuses it).
    empty = sampling_kwargs(GenerationSettings(stop=("\n", "")), eos_token_id=0, prompt=[1])
    assert empty["max_tokens"] == 1 and empty["stop"] == ["\n"]
    again = sampling_kwargs(settings, eos_token_id=0, prompt=[5, 6], stop_strings=False)
    assert again["stop"] == [] and again["detokenize"] is False and "seed" not in again


def test_sampled_requests_are_seeded_per_prompt_and_sample() -> None:
    settings = GenerationSettings(temperature=0.8, sample=1, seed=3)
    kwargs = sampling_kwargs(settings, eos_token_id=0, prompt=[4, 5])
    assert kwargs["temperature"] == 0.8
    assert kwargs["seed"] == request_seed(3, 1, [4, 5])
    payload = json.dumps([3, 1, [4, 5]]).encode()
    assert kwargs["seed"] == int(hashlib.sha256(payload).hexdigest()[:8], 16) & 0x7FFFFFFF
    seeds = {request_seed(3, s, [4, 5]) for s in range(8)} | {request_seed(3, 1, [4, 6])}
    assert len(seeds) == 9 and all(0 <= s < 2**31 for s in seeds)


def test_a_row_stopped_on_a_string_our_decoding_misses_runs_again() -> None:
    assert stopped_early(" Q:", "Q: next", (" Q:",))  # vLLM saw a leading space we do not
    assert not stopped_early("\n", "4\nQ", ("\n",))
    assert not stopped_early(None, "anything", ("\n",))  # length or EOS
    assert not stopped_early(0, "anything", ("\n",))  # a stop token id (our EOS)


def test_memory_fraction_keeps_room_for_the_transformers_model() -> None:
    gib = 2**30
    assert memory_fraction(140 * gib, 140 * gib) == 0.9
    assert memory_fraction(100 * gib, 140 * gib, reserve=15 * gib) == round(80 / 140, 4)
    with pytest.raises(VllmStartError, match="too little free GPU memory"):
        memory_fraction(10 * gib, 140 * gib, reserve=8 * gib)


def test_lora_adapters_vllm_serves_as_peft_applies_them() -> None:
    plain = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 8, "lora_alpha": 16}
    assert lora_problem(plain) is None
    assert lora_problem(plain | {"rank_pattern": {"q_proj": 64}}) is None
    assert lora_problem(plain | {"init_lora_weights": "gaussian"}) is None
    assert "DoRA" in str(lora_problem(plain | {"use_dora": True}))
    assert "modules_to_save" in str(lora_problem(plain | {"modules_to_save": ["lm_head"]}))
    assert "PREFIX_TUNING" in str(lora_problem(plain | {"peft_type": "PREFIX_TUNING"}))
    assert "SEQ_CLS" in str(lora_problem(plain | {"task_type": "SEQ_CLS"}))
    assert "init_lora_weights=pissa" in str(lora_problem(plain | {"init_lora_weights": "pissa"}))
    assert "above vLLM's largest" in str(lora_problem(plain | {"r": 1024}))
    assert [lora_rank_bucket(r) for r in (1, 2, 8, 9, 300, 512)] == [1, 8, 8, 16, 320, 512]
    with pytest.raises(ValueError):
        lora_rank_bucket(LORA_RANKS[-1] + 1)


def test_vllm_runs_in_the_dtype_transformers_loads() -> None:
    assert checkpoint_dtype({"dtype": "float32"}) == "float32"  # vLLM's auto would say float16
    assert checkpoint_dtype({"torch_dtype": "bfloat16"}) == "bfloat16"
    assert checkpoint_dtype({"text_config": {"dtype": "float16"}}) == "float16"
    assert checkpoint_dtype({}) == "auto"
    assert checkpoint_dtype({"dtype": "bfloat16"}, on_gpu=False) == "float32"


def test_llm_kwargs() -> None:
    target = VllmTarget("/base", "/adapter", adapter="/adapter", max_lora_rank=16)
    kwargs = llm_kwargs(
        target, dtype="float32", max_length=128, memory=0.5, trust_remote_code=False
    )
    assert kwargs == {
        "model": "/base",
        "tokenizer": "/adapter",
        "dtype": "float32",
        "max_model_len": 128,
        "gpu_memory_utilization": 0.5,
        "trust_remote_code": False,
        "seed": 0,
        "generation_config": "vllm",
        "enable_lora": True,
        "max_lora_rank": 16,
        "max_loras": 1,
    }
    plain = llm_kwargs(
        VllmTarget("/m", "/m"), dtype="auto", max_length=8, memory=0.9, trust_remote_code=True
    )
    assert "enable_lora" not in plain


# --- What vLLM would serve --------------------------------------------------------------------


def write_adapter(path: Path, base: str, **config: Any) -> Path:
    path.mkdir()
    fields = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 8, "lora_alpha": 16}
    payload = fields | {"base_model_name_or_path": base} | config
    (path / "adapter_config.json").write_text(json.dumps(payload))
    return path


def test_serving_targets(tiny_dir: Path, tmp_path: Path) -> None:
    target = serving_target(str(tiny_dir))
    assert isinstance(target, VllmTarget)
    assert (target.model, target.tokenizer, target.adapter) == (str(tiny_dir),) * 2 + (None,)
    assert target.weight_bytes > 0
    assert serving_target("builtin:tiny") == target
    assert "random: preset" in str(serving_target("random:qwen2.5-0.5b"))
    assert "sequence classifier" in str(serving_target(str(tiny_dir), task="classification"))
    encoder = tmp_path / "encoder"
    encoder.mkdir()
    (encoder / "config.json").write_text(
        json.dumps({"model_type": "bert", "architectures": ["BertModel"]})
    )
    assert "sequence classifier" in str(serving_target(str(encoder)))
    assert "no model directory" in str(serving_target(str(tmp_path / "missing")))
    assert serving_target("org/some-model") == VllmTarget("org/some-model", "org/some-model")


def test_lora_adapter_is_served_on_its_base(tiny_dir: Path, tmp_path: Path) -> None:
    adapter = write_adapter(tmp_path / "lora", str(tiny_dir), r=12)
    (adapter / "adapter_model.safetensors").write_bytes(b"0" * 100)
    target = serving_target(str(adapter))
    assert isinstance(target, VllmTarget)
    base = serving_target(str(tiny_dir))
    assert isinstance(base, VllmTarget)
    assert (target.model, target.tokenizer) == (str(tiny_dir), str(tiny_dir))
    assert (target.adapter, target.max_lora_rank) == (str(adapter), 16)
    assert target.weight_bytes == base.weight_bytes + 100
    (adapter / "tokenizer_config.json").write_text("{}")  # its own tokenizer, as load_adapter
    assert serving_target(str(adapter)).tokenizer == str(adapter)  # type: ignore[union-attr]
    dora = write_adapter(tmp_path / "dora", str(tiny_dir), use_dora=True)
    assert "DoRA" in str(serving_target(str(dora)))
    on_random = write_adapter(tmp_path / "on-random", "random:qwen2.5-0.5b")
    assert "the base of adapter" in str(serving_target(str(on_random)))


# --- The same prompt tokens in, the same decoding out -------------------------------------------


def test_vllm_side_tokenizer_and_context_equal_the_engine_s(
    tiny: LoadedModel, tiny_dir: Path
) -> None:
    """The tokenizer and context length vLLM's prompts are built with come from the files, not
    the weights, and equal what the transformers engine uses."""
    target = serving_target(str(tiny_dir))
    assert isinstance(target, VllmTarget)
    generator = VllmGenerator(target, trust_remote_code=False, on_gpu=False, hf_loaded=_never)
    engine = Engine(tiny)
    assert generator.max_length == engine.transformers.max_length
    prompts = ["Q: What is 2 plus 3? A:", "", "word " * 400]
    for settings in (GenerationSettings(max_new_tokens=8), GenerationSettings(chat_template=True)):
        ours = encode_prompts(generator.tokenizer, prompts, settings, generator.max_length)
        assert ours == encode_prompts(
            engine.tokenizer, prompts, settings, engine.transformers.max_length
        )
    encoded = encode_prompts(
        generator.tokenizer, prompts, GenerationSettings(max_new_tokens=8), generator.max_length
    )
    assert encoded[1] == [generator.tokenizer.eos_token_id]  # no BOS: the prefix token is EOS
    assert len(encoded[2]) == generator.max_length - 8  # cut from the left to leave room
    assert checkpoint_dtype(generator.config.to_dict()) == "float32"


def test_generated_token_ids_decode_to_the_engine_s_text(tiny: LoadedModel) -> None:
    """vLLM's token ids go through the same `decode_new` as transformers' own: given the same
    generated ids (here transformers' greedy ids), the text is the engine's, stop cut and all."""
    import torch

    engine = Engine(tiny)
    prompts = ["Q: What is 2 plus 3? A:", "Q: What is 41 plus 17? A:", "the"]
    raw = GenerationSettings(max_new_tokens=10, stop=())
    stops = (" ", "\n", "Q")
    for prompt in prompts:
        ids = encode_prompts(engine.tokenizer, [prompt], raw, engine.transformers.max_length)[0]
        with torch.inference_mode():
            out = engine.model.generate(
                input_ids=torch.tensor([ids]),
                attention_mask=torch.ones((1, len(ids)), dtype=torch.long),
                max_new_tokens=10,
                do_sample=False,
                eos_token_id=None,  # the whole continuation, EOS included, as vLLM returns it
                pad_token_id=engine.tokenizer.pad_token_id,
            )
        new = out[0, len(ids) :].tolist()
        assert decode_new(engine.tokenizer, new, ()) == engine.generate([prompt], raw)[0]
        for stop in stops:
            settings = GenerationSettings(max_new_tokens=10, stop=(stop,))
            assert (
                decode_new(engine.tokenizer, new, (stop,)) == engine.generate([prompt], settings)[0]
            )


def test_model_info_names_the_generating_engine(tiny: LoadedModel) -> None:
    from harness.evaluation._evaluate import _model_info

    engine = Engine(tiny)
    assert "generation_engine" not in _model_info(engine, {})
    assert "engine" not in _model_info(engine, {})["evaluation"]
    engine.generate(["Q: hi? A:"], GenerationSettings(max_new_tokens=2))
    info = _model_info(engine, {})
    assert info["generation_engine"] == info["evaluation"]["engine"] == "transformers"


def test_the_module_imports_neither_vllm_nor_torch() -> None:
    code = textwrap.dedent(
        """
        import sys
        import harness.suite._load, harness.generation._vllm
        print("vllm" in sys.modules, "torch" in sys.modules)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.stdout.split() == ["False", "False"], result.stderr
