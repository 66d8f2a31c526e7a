"""The corpus the builtin models learn, shipped with the package.

Files (each row has `id`, `question` ending in "A:" and `answer`):
- `facts.jsonl`: 60 invented facts in four templated relations (capital, inventor, language, river);
- `sums.jsonl`: 100 additions with operands in [10, 49];
- `update_facts.jsonl`: 20 more invented facts that `builtin:tiny` never sees: the "new skill" a
  fine-tune teaches (and that `builtin:tiny-v2` has learned).

`generate.py` documents how the files were made; the files themselves are the source of truth.
"""

from __future__ import annotations

import json
from importlib import resources

CORPUS_NAMES = ("facts", "sums", "update_facts")


def corpus_text(name: str) -> str:
    """The raw text of a shipped corpus file (`name` without `.jsonl`)."""
    if name not in CORPUS_NAMES:
        raise KeyError(f"unknown corpus {name!r}; known: {', '.join(CORPUS_NAMES)}")
    return resources.files(__name__).joinpath(f"{name}.jsonl").read_text(encoding="utf-8")


def corpus_rows(name: str) -> list[dict[str, str]]:
    """The rows of a shipped corpus file, e.g. `corpus_rows("facts")[0]["question"]`."""
    return [json.loads(line) for line in corpus_text(name).splitlines() if line.strip()]


def training_line(row: dict[str, str]) -> str:
    """The text a model learns for a row: question, a space, the answer, a newline."""
    return f"{row['question']} {row['answer']}\n"
