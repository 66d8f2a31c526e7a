"""The pieces of a builtin model: tokenizer, architecture, training loop, greedy accuracy.

Plain torch rather than a Trainer: a build is a few hundred tiny steps, and Trainer's start-up would
cost more than the training. Everything is seeded so a build is a pure function of recipe + corpus.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from harness.models.corpus import corpus_rows, training_line

log = logging.getLogger("harness.models")

EOS_TOKEN = "<|eos|>"
PAD_TOKEN = "<|pad|>"
# Simple on purpose: a role prefix per message, so chat-template support can be tested on it.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)
TOKENIZER_CORPORA = ("facts", "sums", "update_facts")

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Architecture:
    """A small Llama's shape."""

    hidden_size: int = 128
    intermediate_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    max_positions: int = 128


@dataclass(frozen=True)
class TrainingPlan:
    """What to train on and how: `data` pairs a corpus name with how often its rows repeat."""

    data: tuple[tuple[str, int], ...]
    steps: int
    learning_rate: float
    batch_size: int = 32
    warmup_steps: int = 30
    min_lr_ratio: float = 0.1


def train_tokenizer(vocab_size: int) -> Any:
    """A byte-level BPE tokenizer trained on the shipped corpus: eos + pad, no automatic BOS."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    lines = [training_line(row) for name in TOKENIZER_CORPORA for row in corpus_rows(name)]
    backend.train_from_iterator(lines, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def new_model(arch: Architecture, tokenizer: Any, seed: int) -> Any:
    """A freshly initialised Llama sized for `tokenizer`, seeded."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=arch.hidden_size,
        intermediate_size=arch.intermediate_size,
        num_hidden_layers=arch.num_layers,
        num_attention_heads=arch.num_heads,
        num_key_value_heads=arch.num_heads,
        max_position_embeddings=arch.max_positions,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def encode_lines(tokenizer: Any, lines: Sequence[str]) -> tuple[Any, Any]:
    """(input_ids, labels) padded to one length; each line ends with EOS; pads are ignored."""
    import torch

    encoded = [tokenizer(line)["input_ids"] + [tokenizer.eos_token_id] for line in lines]
    width = max(len(ids) for ids in encoded)
    input_ids = torch.full((len(encoded), width), tokenizer.pad_token_id, dtype=torch.long)
    labels = torch.full((len(encoded), width), -100, dtype=torch.long)
    for i, ids in enumerate(encoded):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, : len(ids)] = torch.tensor(ids)
    return input_ids, labels


def plan_lines(plan: TrainingPlan) -> list[str]:
    """The training lines of a plan, repeats included, in corpus order."""
    return [
        training_line(row)
        for name, repeats in plan.data
        for row in corpus_rows(name)
        for _ in range(repeats)
    ]


def learning_rate_at(step: int, plan: TrainingPlan) -> float:
    """Linear warm-up, then cosine decay to `min_lr_ratio` of the peak."""
    if step < plan.warmup_steps:
        return plan.learning_rate * (step + 1) / plan.warmup_steps
    progress = (step - plan.warmup_steps) / max(1, plan.steps - plan.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * progress))
    return plan.learning_rate * (plan.min_lr_ratio + (1 - plan.min_lr_ratio) * cosine)


def batch_order(rows: int, plan: TrainingPlan, seed: int) -> list[Any]:
    """Index batches for every step: seeded epoch-wise shuffles, cut into batches."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    batches: list[Any] = []
    while len(batches) < plan.steps:
        order = torch.randperm(rows, generator=generator)
        batches += [b for b in order.split(plan.batch_size) if len(b) == plan.batch_size]
    return batches[: plan.steps]


def train(
    model: Any, tokenizer: Any, plan: TrainingPlan, seed: int, progress: Progress | None = None
) -> float:
    """Train `model` in place with AdamW; returns the last step's loss."""
    import torch

    input_ids, labels = encode_lines(tokenizer, plan_lines(plan))
    optimizer = torch.optim.AdamW(model.parameters(), lr=plan.learning_rate, weight_decay=0.0)
    model.train()
    loss = torch.tensor(float("nan"))
    for step, batch in enumerate(batch_order(len(input_ids), plan, seed)):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate_at(step, plan)
        ids, target = input_ids[batch], labels[batch]
        loss = model(
            input_ids=ids, attention_mask=ids != tokenizer.pad_token_id, labels=target
        ).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        report_progress(step + 1, plan.steps, loss.item(), progress)
    model.eval()
    return loss.item()


def report_progress(step: int, total: int, loss: float, progress: Progress | None) -> None:
    if progress is not None:
        progress(step, total)
    if step % 100 == 0 or step == total:
        log.info("builtin model: step %d/%d, loss %.3f", step, total, loss)


def greedy_answers(
    model: Any, tokenizer: Any, prompts: Sequence[str], max_new_tokens: int = 12
) -> list[str]:
    """Greedy continuations of `prompts`, each cut at its first newline."""
    import torch

    side, tokenizer.padding_side = tokenizer.padding_side, "left"  # generation pads on the left
    try:
        batch = tokenizer(list(prompts), return_tensors="pt", padding=True)
    finally:
        tokenizer.padding_side = side
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False)
    texts = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    return [text.split("\n", 1)[0] for text in texts]


def answer_accuracy(model: Any, tokenizer: Any, rows: Sequence[dict[str, str]]) -> float:
    """Share of rows whose greedy continuation (up to a newline) is exactly " " + answer."""
    outputs = greedy_answers(model, tokenizer, [row["question"] for row in rows])
    hits = sum(out == f" {row['answer']}" for out, row in zip(outputs, rows, strict=True))
    return hits / len(rows)
