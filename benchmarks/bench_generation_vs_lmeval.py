"""Greedy generation through lm-eval (`HFLM.generate_until`) vs `Engine.generate`: same outputs, timed.

    python benchmarks/bench_generation_vs_lmeval.py [--model builtin:tiny|random|DIR] [--prompts 512]
        [--max-new-tokens 16] [--batch-size 32] [--threads 1]

The same prompts ("Q: What is A plus B? A:", varied lengths), stop string "\\n", `max_gen_toks`
= `max_new_tokens`, batch size 32 on both sides, no output cache on the harness side. Each side
runs once untimed (warm-up), then is timed; every output must be identical. Target: harness time /
lm-eval time <= 1.0.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    apply_threads,
    arithmetic_prompt,
    common_arguments,
    load,
    print_json,
    print_table,
    timed,
)

TARGET = 1.0
STOP = "\n"


def prompts(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    # a varied prefix so batches mix lengths, as a real suite's prompts do
    return [
        " ".join(["Please answer."] * rng.randint(0, 3))
        + arithmetic_prompt(rng.randint(0, 99), rng.randint(0, 99))
        for _ in range(count)
    ]


def lmeval_generate(hflm: Any, texts: list[str], max_new_tokens: int) -> list[str]:
    from lm_eval.api.instance import Instance

    settings = {"until": [STOP], "max_gen_toks": max_new_tokens, "do_sample": False}
    requests = [
        Instance(request_type="generate_until", doc={}, arguments=(t, settings), idx=i)
        for i, t in enumerate(texts)
    ]
    return list(hflm.generate_until(requests, disable_tqdm=True))


def harness_generate(engine: Any, texts: list[str], max_new_tokens: int) -> list[str]:
    from harness.generation import GenerationSettings

    return engine.generate(texts, GenerationSettings(max_new_tokens=max_new_tokens, stop=(STOP,)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_arguments(parser)
    parser.add_argument("--prompts", type=int, default=512)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    from lm_eval.models.huggingface import HFLM

    from harness.generation import Engine

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    threads = apply_threads(args.threads)
    lm = load(args.model)
    hflm = HFLM(pretrained=lm.model, tokenizer=lm.tokenizer, batch_size=args.batch_size)
    engine = Engine(lm, batch_size=args.batch_size)  # no cache: every call computes
    texts = prompts(args.prompts)
    n = args.max_new_tokens

    lmeval_generate(hflm, texts[:64], n)  # warm-ups
    harness_generate(engine, texts[:64], n)
    theirs, t_theirs = timed(lambda: lmeval_generate(hflm, texts, n))
    ours, t_ours = timed(lambda: harness_generate(engine, texts, n))
    same = sum(a == b for a, b in zip(theirs, ours, strict=True))
    ratio = t_ours / t_theirs
    print_table(
        [
            ("model", args.model),
            ("torch threads", str(threads)),
            (
                "prompts",
                f"{len(texts)}, max_new_tokens {n}, stop {STOP!r}, batch {args.batch_size}",
            ),
            ("lm-eval HFLM.generate_until", f"{t_theirs:.2f} s"),
            ("harness Engine.generate", f"{t_ours:.2f} s"),
            ("ratio harness/lm-eval", f"{ratio:.2f}  (target <= {TARGET})"),
            ("identical outputs", f"{same}/{len(texts)}"),
        ]
    )
    print_json(
        {
            "benchmark": "generation_vs_lmeval",
            "model": args.model,
            "threads": threads,
            "prompts": len(texts),
            "max_new_tokens": n,
            "lmeval_s": round(t_theirs, 4),
            "harness_s": round(t_ours, 4),
            "ratio": round(ratio, 3),
            "identical": same,
        }
    )
    assert same == len(texts), f"{len(texts) - same} outputs differ, e.g. " + next(
        f"{t!r}: lm-eval {a!r}, harness {b!r}"
        for t, a, b in zip(texts, theirs, ours, strict=True)
        if a != b
    )


if __name__ == "__main__":
    main()
