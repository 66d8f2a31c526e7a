"""Models with known behaviour, made by real training."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "suites" / "data"


def damaged_copy(tiny_dir: Path, out: Path) -> Path:
    """The tiny model after an aggressive full fine-tune on new facts only: it forgets."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    lines = [json.loads(line) for line in (DATA / "new_facts.jsonl").read_text().splitlines()]
    texts = [f"{row['prompt']} {row['answers'][0]}\n" for row in lines]
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(150):
        loss = model(**batch, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


SMOLLM2 = "builtin:smollm2-135m-instruct"


def smollm2_file() -> Path:
    """The real instruct model's packaged GGUF; CI (HARNESS_REQUIRE_REAL_MODEL=1) fails rather
    than skips without it."""
    from harness.core.errors import ModelNotFoundError
    from harness.models.builtin import PACKAGED

    try:
        return PACKAGED["smollm2-135m-instruct"].path()
    except ModelNotFoundError as exc:
        if os.environ.get("HARNESS_REQUIRE_REAL_MODEL") == "1":
            pytest.fail(f"{exc}; HARNESS_REQUIRE_REAL_MODEL=1 requires it")
        pytest.skip(str(exc))
