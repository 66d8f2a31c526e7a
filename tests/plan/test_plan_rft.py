"""`harness plan` for rft: the larger of sampling (a KV cache) and the fine-tuning on sampled
completions, from the backend's memory profile; no model is loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.backends import BACKENDS
from harness.plan._estimate import kv_cache_bytes, model_shape, training_breakdown
from harness.plan._suite import BaseModel, DeviceInfo, read_config, training_setup

REPO = Path(__file__).resolve().parents[2]
CPU_INFO = DeviceInfo("cpu", "float32", None, "")


@pytest.fixture(scope="module")
def tiny(tiny_dir: Path) -> BaseModel:
    from transformers import AutoTokenizer

    return BaseModel("tiny", read_config(tiny_dir), AutoTokenizer.from_pretrained(tiny_dir))


def prompt_rows() -> list[dict[str, str]]:
    lines = (REPO / "suites" / "data" / "known_facts.jsonl").read_text().splitlines()
    return [{"prompt": json.loads(line)["prompt"]} for line in lines]


def prompt_lengths(tiny: BaseModel, rows: list[dict[str, str]]) -> list[int]:
    ids = tiny.tokenizer([r["prompt"] for r in rows], add_special_tokens=False)["input_ids"]
    return sorted((len(row) for row in ids), reverse=True)


def test_rft_plans_its_sampling_kv_cache_against_the_fine_tuning(tiny: BaseModel) -> None:
    rft = BACKENDS.get("rft")
    rows = prompt_rows()
    config = rft.Config(generation_batch_size=16, max_completion_length=24)
    setup, _ = training_setup(rft, config, rows, tiny, CPU_INFO)
    longest = prompt_lengths(tiny, rows)[0]
    assert setup.seq_len == setup.generation_len == longest + 24  # a kept row: prompt + sample
    assert setup.generation_sequences == 16 and setup.completion_len == 24
    assert setup.lora is not None and not setup.reference_copy

    shape = model_shape(tiny.config)
    small = training_breakdown(shape, setup)
    kv = kv_cache_bytes(shape, 16, longest + 24, 4)
    assert small.extra["KV cache (generation)"] == kv
    assert small.total == small.weights + small.optimizer + max(
        small.gradients + small.activations, kv
    )
    # Sampling many completions at once: the KV cache becomes the peak, not the fine-tuning.
    wide, _ = training_setup(
        rft, config.model_copy(update={"generation_batch_size": 4096}), rows, tiny, CPU_INFO
    )
    big = training_breakdown(shape, wide)
    assert big.extra["KV cache (generation)"] > big.gradients + big.activations
    assert big.total == big.weights + big.optimizer + big.extra["KV cache (generation)"]
    full, _ = training_setup(rft, rft.Config(adapter="full"), rows, tiny, CPU_INFO)
    assert full.lora is None and training_breakdown(shape, full).optimizer > small.optimizer


def test_padding_free_rft_counts_the_completions_it_will_train_on(tiny: BaseModel) -> None:
    rft = BACKENDS.get("rft")
    rows = prompt_rows()
    config = rft.Config(padding_free=True, per_device_train_batch_size=4, max_completion_length=24)
    setup, _ = training_setup(rft, config, rows, tiny, CPU_INFO)
    # each of the batch's longest rows: prompt + 24 sampled tokens + eos
    assert setup.padding_free_tokens == sum(n + 24 + 1 for n in prompt_lengths(tiny, rows)[:4])
