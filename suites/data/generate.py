"""Writes the example suites' evaluation data from the corpus that ships with harness.

The built-in model learned `facts.jsonl` and `sums.jsonl`; `builtin:tiny-v2` also learned
`update_facts.jsonl`. Run `python suites/data/generate.py` after changing the corpus.
"""

from __future__ import annotations

import json
import random
from importlib.resources import files
from pathlib import Path

HERE = Path(__file__).parent


def corpus(name: str) -> list[dict]:
    text = files("harness.models.corpus").joinpath(name).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def write(name: str, rows: list[dict]) -> None:
    lines = [json.dumps(row, ensure_ascii=False) for row in rows]
    (HERE / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


def choice_rows(facts: list[dict], rng: random.Random) -> list[dict]:
    """Four-way multiple choice: the true answer among three answers of the same relation."""
    rows = []
    for fact in facts:
        others = [f["answer"] for f in facts if f["relation"] == fact["relation"] and f is not fact]
        choices = [*rng.sample(others, 3), fact["answer"]]
        rng.shuffle(choices)
        rows.append(
            {
                "id": fact["id"],
                "prompt": fact["question"],
                "choices": choices,
                "answer": fact["answer"],
            }
        )
    return rows


def preference_rows(facts: list[dict], rng: random.Random) -> list[dict]:
    """DPO pairs: the true answer chosen over another fact's answer."""
    rows = []
    for fact in facts:
        wrong = rng.choice([f["answer"] for f in facts if f["answer"] != fact["answer"]])
        rows.append(
            {
                "id": fact["id"],
                "prompt": fact["question"],
                "chosen": f" {fact['answer']}\n",
                "rejected": f" {wrong}\n",
            }
        )
    return rows


def kto_rows(pairs: list[dict]) -> list[dict]:
    """KTO's unpaired rows from the DPO pairs: each chosen answer desirable, each rejected one
    undesirable, alternating, a fact's two rows half the file apart (trl estimates KTO's KL term
    from neighbouring rows, which should be of different facts)."""
    half = len(pairs) // 2
    rows = []
    for i, pair in enumerate(pairs):
        other = pairs[(i + half) % len(pairs)]
        rows += [
            {
                "id": f"{pair['id']}-desirable",
                "prompt": pair["prompt"],
                "completion": pair["chosen"],
                "label": True,
            },
            {
                "id": f"{other['id']}-undesirable",
                "prompt": other["prompt"],
                "completion": other["rejected"],
                "label": False,
            },
        ]
    return rows


def main() -> None:
    rng = random.Random(0)
    facts, sums = corpus("facts.jsonl"), corpus("sums.jsonl")
    write(
        "known_facts.jsonl",
        [{"id": f["id"], "prompt": f["question"], "answers": [f["answer"]]} for f in facts],
    )
    write(
        "sums.jsonl",
        [{"id": s["id"], "prompt": s["question"], "expected": s["answer"]} for s in sums],
    )
    write("facts_choice.jsonl", choice_rows(facts, rng))
    write(
        "fact_texts.jsonl",
        [{"id": f["id"], "text": f"{f['question']} {f['answer']}"} for f in facts[::3]],
    )
    updates = corpus("update_facts.jsonl")
    # Training sets for the suite's trained candidates: the new facts as prompt/completion (SFT),
    # as preference pairs (DPO); GRPO trains on the evaluation prompts, rewarded by the qa check.
    write(
        "new_facts_train.jsonl",
        [
            {"id": f["id"], "prompt": f["question"], "completion": f" {f['answer']}\n"}
            for f in updates
        ],
    )
    pairs = preference_rows(updates, rng)
    write("new_facts_prefs.jsonl", pairs)
    write("new_facts_kto.jsonl", kto_rows(pairs))
    # The same new facts mixed with replay of what the base knew: the usual guard against forgetting.
    replay = [
        {"id": r["id"], "prompt": r["question"], "completion": f" {r['answer']}\n"}
        for r in facts + sums[:50]
    ]
    new = [
        {"id": f["id"], "prompt": f["question"], "completion": f" {f['answer']}\n"} for f in updates
    ]
    write("new_facts_replay.jsonl", new + new + replay)
    write(
        "new_facts.jsonl",
        [{"id": f["id"], "prompt": f["question"], "answers": [f["answer"]]} for f in updates],
    )
    # Held-out preference pairs for evaluating a reward model (the `preference` check): other
    # facts than the training pairs' (those the base knew). Their own generator, so adding them
    # changed none of the files above.
    write("known_facts_prefs.jsonl", preference_rows(facts, random.Random(1)))


if __name__ == "__main__":
    main()
