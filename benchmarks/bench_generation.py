"""Batched `Engine.generate` vs one prompt at a time: same outputs, how much faster.

    python benchmarks/bench_generation.py [--model builtin:tiny|random|DIR] [--n 256]

Target: ratio (one-at-a-time time / batched time) >= 4.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

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

TARGET = 4.0


def prompts(n: int, seed: int = 0) -> list[str]:
    """Sums with 0-2 worked examples before them, so prompt lengths vary."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        shots = []
        for _ in range(rng.randint(0, 2)):
            a, b = rng.randint(0, 99), rng.randint(0, 99)
            shots.append(f"{arithmetic_prompt(a, b)} {a + b}\n")
        out.append("".join(shots) + arithmetic_prompt(rng.randint(0, 99), rng.randint(0, 99)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_arguments(parser)
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    args = parser.parse_args()

    from harness.generation import Engine, GenerationSettings

    threads = apply_threads(args.threads)
    lm = load(args.model)
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, stop=("\n",))
    items = prompts(args.n)
    for size in (args.batch_size, 1):  # warm-up: first calls pay for lazy init and allocation
        Engine(lm, batch_size=size).generate(items[: args.batch_size], settings)
    batched, t_batched = timed(
        lambda: Engine(lm, batch_size=args.batch_size).generate(items, settings)
    )
    single, t_single = timed(lambda: Engine(lm, batch_size=1).generate(items, settings))
    mismatches = [i for i, (a, b) in enumerate(zip(batched, single, strict=True)) if a != b]
    ratio = t_single / t_batched
    print_table(
        [
            ("model", args.model),
            ("torch threads", str(threads)),
            ("prompts", str(len(items))),
            ("max_new_tokens", str(args.max_new_tokens)),
            (f"batched (batch_size={args.batch_size})", f"{t_batched:.2f} s"),
            ("one at a time (batch_size=1)", f"{t_single:.2f} s"),
            ("speed-up (ratio)", f"{ratio:.1f}x  (target >= {TARGET}x)"),
            ("identical outputs", f"{len(items) - len(mismatches)}/{len(items)}"),
            ("sample output", repr(batched[0])),
        ]
    )
    print_json(
        {
            "benchmark": "generation",
            "model": args.model,
            "n": len(items),
            "batch_size": args.batch_size,
            "max_new_tokens": args.max_new_tokens,
            "batched_s": round(t_batched, 4),
            "single_s": round(t_single, 4),
            "ratio": round(ratio, 2),
            "identical": not mismatches,
            "threads": threads,
        }
    )
    assert not mismatches, f"batched and one-at-a-time outputs differ at {mismatches[:10]}"


if __name__ == "__main__":
    main()
