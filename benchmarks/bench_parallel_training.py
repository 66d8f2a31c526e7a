"""Trained candidates one after another (the local engine) vs side by side (the Ray engine).

    python benchmarks/bench_parallel_training.py [--candidates 2] [--base builtin:tiny] [--steps 60]
        [--address ADDRESS]

One suite of N LoRA candidates (each its own learning rate, so each is its own artifact) and one
`qa` check, run twice through `run_suite` with `--retrain`: `engine: local` (each candidate trains
in this process at its turn) and `engine: ray` (every model a Ray actor at once: on its own GPU
when the machine has N, else on the CPU with a core each; a Ray instance started for the run, or
the cluster at --address). Reported: the wall time of each whole run (Ray's start-up included),
and the ratio. On a machine with N GPUs this is the speed-up of spreading candidates over them;
on a CPU it shows what side-by-side workers cost or gain there. A warm-up run first builds the
base and imports everything.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO_ROOT, print_json, print_table, timed

DATA = REPO_ROOT / "suites" / "data"


def suite_text(base: str, candidates: int, steps: int, engine: str) -> str:
    lines = [
        "name: parallel-bench",
        f"base: {base}",
        "generation: {max_new_tokens: 8, batch_size: 32}",
        f"execution: {{engine: {engine}}}",
        "data:",
        f"  train: {{path: {DATA / 'new_facts_train.jsonl'}}}",
        f"  new_facts: {{path: {DATA / 'new_facts.jsonl'}}}",
        "capabilities:",
        "  - name: new_facts",
        "    checks: [{type: qa, data: new_facts}]",
        "candidates:",
    ]
    for i in range(candidates):
        rate = 1e-3 * (i + 2)
        lines.append(
            f"  - {{name: c{i}, backend: lora, data: train, args: {{learning_rate: {rate}, max_steps: {steps}}}}}"
        )
    return "\n".join(lines) + "\n"


def run(
    directory: Path, base: str, candidates: int, steps: int, engine: str, address: str | None
) -> float:
    from harness.run import run_suite
    from harness.store import Store
    from harness.suite import load_suite

    path = directory / f"{engine}.yaml"
    path.write_text(suite_text(base, candidates, steps, engine))
    suite = load_suite(path)
    if engine == "ray" and address:
        suite = suite.on_ray(address)
    result, seconds = timed(
        lambda: run_suite(suite, Store(directory / f"{engine}.duckdb"), retrain=True)
    )
    failed = [c.record.name for c in result.candidates if c.record.status == "error"]
    if failed:
        raise SystemExit(f"candidates failed: {failed}: {result.candidates[0].record.error}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=2)
    parser.add_argument("--base", default="builtin:tiny")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--address", default=None, help="A Ray cluster (default: start one)")
    args = parser.parse_args()

    from harness.training._schedule import visible_gpus

    directory = Path(tempfile.mkdtemp(prefix="bench-parallel-"))
    run(directory, args.base, 1, 1, "local", None)  # warm-up: base built, libraries imported
    sequential = run(directory, args.base, args.candidates, args.steps, "local", None)
    parallel = run(directory, args.base, args.candidates, args.steps, "ray", args.address)
    gpus = visible_gpus()
    print_table(
        [
            ("devices", f"{len(gpus)} GPU(s)" if gpus else "CPU only"),
            ("candidates x steps", f"{args.candidates} x {args.steps} on {args.base}"),
            ("engine: local (in process, in turn)", f"{sequential:.2f} s"),
            ("engine: ray (side by side, start-up included)", f"{parallel:.2f} s"),
            ("speed-up", f"{sequential / parallel:.2f}x"),
        ]
    )
    print_json(
        {
            "benchmark": "parallel_training",
            "gpus": len(gpus),
            "candidates": args.candidates,
            "steps": args.steps,
            "base": args.base,
            "local_s": round(sequential, 3),
            "ray_s": round(parallel, 3),
            "speedup": round(sequential / parallel, 3),
        }
    )


if __name__ == "__main__":
    main()
