"""Regenerate the shipped corpus files (`python -m harness.models.corpus.generate`).

The jsonl files are the source of truth (the builtin models hash them); this script only documents
how they were made and lets a maintainer rebuild them. All names are invented from syllables so no
real model knows the facts.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SEED = 1234
HERE = Path(__file__).parent

# relation -> (question template, number of known facts, number of update facts)
RELATIONS: dict[str, tuple[str, int, int]] = {
    "capital": ("Q: What is the capital of {subject}? A:", 15, 5),
    "inventor": ("Q: Who invented the {subject}? A:", 15, 5),
    "language": ("Q: What language is spoken in {subject}? A:", 15, 5),
    "river": ("Q: Which river flows through {subject}? A:", 15, 5),
}
SUBJECT_SUFFIX = {"capital": "ia", "inventor": "scope", "language": "land", "river": "ton"}
ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "th", "br", "kr"]
VOWELS = ["a", "e", "i", "o", "u", "ai", "ou"]
CODAS = ["", "", "n", "r", "l", "s", "th"]


def invented_word(rng: random.Random, syllables: int) -> str:
    """A capitalised pronounceable non-word."""
    parts = [rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS) for _ in range(syllables)]
    return "".join(parts).capitalize()


def unique_words(
    rng: random.Random, count: int, used: set[str], suffix: str = "", syllables: int = 2
) -> list[str]:
    """`count` invented words not in `used` (which is updated)."""
    words: list[str] = []
    while len(words) < count:
        word = invented_word(rng, syllables) + suffix
        if word.lower() not in used:
            used.add(word.lower())
            words.append(word)
    return words


def fact_rows(rng: random.Random, used: set[str]) -> tuple[list[dict], list[dict]]:
    """(known facts, update facts), each row {id, relation, subject, question, answer}."""
    known: list[dict] = []
    update: list[dict] = []
    for relation, (template, n_known, n_update) in RELATIONS.items():
        subjects = unique_words(rng, n_known + n_update, used, SUBJECT_SUFFIX[relation])
        answers = unique_words(rng, n_known + n_update, used)
        for i, (subject, answer) in enumerate(zip(subjects, answers, strict=True)):
            row = {"relation": relation, "subject": subject, "answer": answer}
            row["question"] = template.format(subject=subject)
            target, prefix = (known, "fact") if i < n_known else (update, "new")
            target.append({"id": f"{prefix}-{relation}-{len(target):02d}", **row})
    return known, update


def sum_rows(rng: random.Random, count: int = 100, low: int = 10, high: int = 49) -> list[dict]:
    """`count` distinct additions a + b with operands in [low, high]."""
    pairs = sorted({(a, b) for a in range(low, high + 1) for b in range(low, high + 1)})
    chosen = rng.sample(pairs, count)
    return [
        {"id": f"sum-{i:03d}", "question": f"Q: What is {a} plus {b}? A:", "answer": str(a + b)}
        for i, (a, b) in enumerate(chosen)
    ]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def main() -> None:
    rng = random.Random(SEED)
    known, update = fact_rows(rng, used=set())
    write_jsonl(HERE / "facts.jsonl", known)
    write_jsonl(HERE / "update_facts.jsonl", update)
    write_jsonl(HERE / "sums.jsonl", sum_rows(rng))


if __name__ == "__main__":
    main()
