"""Prompts to token ids and back, shared by the transformers and vLLM engines."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from harness.core.chat import chat_turns
from harness.generation._settings import GenerationSettings

# lm-eval's fallback when neither the config nor the tokenizer states a context length.
DEFAULT_MAX_LENGTH = 2048


# transformers' "no limit" sentinel for tokenizer.model_max_length.
_TOKENIZER_INFINITY = 1000000000000000019884624838656


_T = TypeVar("_T")


def _chunks(items: list[_T], size: int) -> Iterator[list[_T]]:
    # itertools.batched arrives only in Python 3.12.
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _group_by_size(sizes: list[int], target: int) -> Iterator[list[int]]:
    """Consecutive index groups whose sizes add up to about `target` (at least one each)."""
    group: list[int] = []
    total = 0
    for i, size in enumerate(sizes):
        if group and total + size > target:
            yield group
            group, total = [], 0
        group.append(i)
        total += size
    if group:
        yield group


def _left_pad(rows: list[list[int]], pad_id: int, device: Any) -> tuple[Any, Any]:
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row) :] = 1
    return ids.to(device), mask.to(device)


def _move_trailing_spaces(context: str, continuation: str) -> tuple[str, str]:
    """Trailing spaces of the context start the continuation's first word (lm-eval does this)."""
    stripped = context.rstrip()
    return stripped, context[len(stripped) :] + continuation


def _cut_at_stop(text: str, stop: tuple[str, ...]) -> str:
    cuts = [text.find(s) for s in stop if s and s in text]
    return text[: min(cuts)] if cuts else text


def encode_prompt(tokenizer: Any, prompt: str, settings: GenerationSettings) -> list[int]:
    """A prompt's token ids: as the tokenizer encodes it, or wrapped by its chat template."""
    if not settings.chat_template:
        return list(tokenizer(prompt)["input_ids"])
    messages = chat_turns(prompt, settings.system_prompt)
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    # The template already carries whatever special tokens the model expects.
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def encode_prompts(
    tokenizer: Any, prompts: Sequence[str], settings: GenerationSettings, max_length: int
) -> list[list[int]]:
    """Each prompt's token ids, cut from the left to leave room for `max_new_tokens`."""
    budget = max(1, max_length - settings.max_new_tokens)
    encoded = [encode_prompt(tokenizer, p, settings)[-budget:] for p in prompts]
    if not all(encoded):  # an empty prompt is conditioned on the prefix token, as lm-eval does
        prefix = [_prefix_token_id(tokenizer)]
        encoded = [row or prefix for row in encoded]
    return encoded


def decode_new(tokenizer: Any, tokens: list[int], stop: tuple[str, ...]) -> str:
    """Generated token ids to text: up to the first EOS, special tokens skipped, cut at the
    first stop string."""
    eos = tokenizer.eos_token_id
    if eos is not None and eos in tokens:
        tokens = tokens[: tokens.index(eos)]
    return _cut_at_stop(tokenizer.decode(tokens, skip_special_tokens=True), stop)


def _prefix_token_id(tokenizer: Any) -> int:
    """lm-eval's prefix token: BOS when the tokenizer has one, else EOS."""
    if tokenizer.bos_token_id is not None:
        return int(tokenizer.bos_token_id)
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has neither a BOS nor an EOS token to condition on")
    return int(tokenizer.eos_token_id)


def _max_length(model: Any, tokenizer: Any) -> int:
    """lm-eval's `resolve_max_length`: text config, then config, then tokenizer, then 2048."""
    config = model.config
    config = getattr(config, "text_config", None) or config
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, attr, None)
        if value is not None:
            return int(value)
    limit = getattr(tokenizer, "model_max_length", None)
    if limit is not None and limit != _TOKENIZER_INFINITY:
        return int(limit)
    return DEFAULT_MAX_LENGTH
