"""Shared helpers for the benchmark scripts: model loading, timing, reporting."""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

# No machine of this project reaches a hub; fail fast instead of waiting on timeouts.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default="builtin:tiny",
        help="builtin:tiny (default), a local model directory, or 'random' (a random tiny Llama)",
    )
    # On a shared 2-core box, torch's second thread spin-waits on a busy core and makes every op
    # ~10x slower; --threads 1 gives stable numbers there. Both sides always run alike.
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )


def apply_threads(threads: int | None) -> int:
    import torch

    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def load(reference: str) -> Any:
    """A `LoadedModel` for `reference`; 'random' builds a random 4-layer Llama in a temp dir."""
    if reference == "random":
        directory = Path(tempfile.mkdtemp(prefix="bench-random-"))
        build_random_tiny(directory)
        reference = str(directory)
    from harness.models.loading import load_model

    return load_model(reference)


def build_random_tiny(directory: Path, seed: int = 0) -> None:
    """The builtin's shape (4 layers, 128 wide) with random weights and a corpus-trained BPE."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    rng = random.Random(seed)
    lines = [arithmetic_prompt(rng.randint(0, 99), rng.randint(0, 99)) for _ in range(500)]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        lines,
        trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=["<|eos|>", "<|pad|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|eos|>", pad_token="<|pad|>")
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        max_position_embeddings=128,
        initializer_range=0.3,  # peaked logits, so greedy decoding has no float-noise ties
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=None,
    )
    LlamaForCausalLM(config).save_pretrained(directory)
    tok.save_pretrained(directory)


def arithmetic_prompt(a: int, b: int) -> str:
    return f"Q: What is {a} plus {b}? A:"


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    """Result of `fn` and its wall time in seconds (warm up separately, before)."""
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def print_table(rows: list[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def print_json(record: dict[str, Any]) -> None:
    print(json.dumps(record, sort_keys=True))


def load_average() -> str:
    """The machine's 1, 5 and 15 minute load averages, to say whether a timing ran on a busy box."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # not available on this platform
        return "n/a"
