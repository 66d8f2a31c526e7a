"""A reward model's scores: a sequence classifier with one output, as trl's RewardTrainer trains it.

`reward_token_ids` turns a (prompt, answer) pair into the tokens RewardTrainer trains on, and
`reward_scores` runs token rows through the model's one-output head, batched. Both the
`reward_model` backend (scoring completions for other candidates) and the `preference` check
(scoring held-out pairs) use them, so a pair is scored exactly as the model saw it in training.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.core.chat import chat_turns


def reward_token_ids(
    tokenizer: Any, prompt: str, answer: str, chat_template: bool, system_prompt: str | None
) -> list[int]:
    """RewardTrainer's tokenization of an explicit-prompt row (trl 1.16 `_prepare_dataset`):
    plain text gets the eos appended, a conversation [system, user prompt, assistant answer] is
    rendered by the chat template."""
    if chat_template:
        messages = [*chat_turns(prompt, system_prompt), {"role": "assistant", "content": answer}]
        encoded = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)
        return list(encoded["input_ids"])
    eos = tokenizer.eos_token
    text = prompt + answer
    return list(tokenizer(text if text.endswith(eos) else text + eos)["input_ids"])


def reward_scores(model: Any, rows: Sequence[list[int]], batch_size: int) -> list[float]:
    """The one-output head's value for each token row, `batch_size` rows at a time, right-padded
    with the model's pad id (the head reads each row's last non-pad token, as in training)."""
    import torch  # heavy: only when a reward model really scores

    pad_id = model.config.pad_token_id
    scores: list[float] = []
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        width = max(len(row) for row in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, row in enumerate(batch):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, : len(row)] = 1
        with torch.inference_mode():
            logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device))
        scores += logits.logits[:, 0].float().cpu().tolist()
    return scores
