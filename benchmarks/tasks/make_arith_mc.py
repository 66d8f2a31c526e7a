"""Writes arith_mc.jsonl: 200 four-way multiple-choice sums for the lm-eval comparison benchmark.

python benchmarks/tasks/make_arith_mc.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

N_ITEMS = 200
OUT = Path(__file__).with_name("arith_mc.jsonl")


def item(rng: random.Random) -> dict[str, object]:
    a, b = rng.randint(0, 99), rng.randint(0, 99)
    answer = a + b
    # Distractors near the answer, some of another length, so acc and acc_norm can differ.
    wrong = rng.sample([d for d in range(max(0, answer - 12), answer + 13) if d != answer], 2)
    wrong.append(answer * 10 + rng.randint(0, 9))
    choices = [str(c) for c in [answer, *wrong]]
    rng.shuffle(choices)
    return {
        "question": f"Q: What is {a} plus {b}? A:",
        "choices": choices,
        "answer": choices.index(str(answer)),
    }


def main() -> None:
    rng = random.Random(0)
    lines = [json.dumps(item(rng)) for _ in range(N_ITEMS)]
    OUT.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
