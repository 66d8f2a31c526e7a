"""A second run of an unchanged suite, served from the output cache, vs the first run.

    python benchmarks/bench_cache.py [--suite suites/qa.yaml]

Both runs go through `run_suite` into one fresh DuckDB store in this process. An untimed warm-up
run into another store comes first: it builds the built-in models, trains the suite's candidates
(their artifacts are then reused), and imports every library, so only evaluation and recording
are compared. Target: the second run >= 10x faster than the first.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO_ROOT, apply_threads, print_json, print_table, timed

TARGET = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default=str(REPO_ROOT / "suites" / "qa.yaml"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--base", help="evaluate this base model instead (its candidates dropped)")
    args = parser.parse_args()

    from harness.models.loading import load_model
    from harness.run import run_suite
    from harness.store import Store
    from harness.suite import load_suite

    threads = apply_threads(args.threads)
    suite = load_suite(args.suite, base_override=args.base)
    if args.base:  # e.g. a random: preset of a real model's shape, where model work dominates
        suite = replace(suite, spec=suite.spec.model_copy(update={"candidates": []}))
    for reference in suite.models.values():
        if reference.startswith("builtin:"):
            load_model(reference)  # builds builtin models now, outside the timed runs
    with tempfile.TemporaryDirectory() as folder:
        run_suite(suite, Store(Path(folder) / "warmup.duckdb"))  # trains, imports: untimed
        store = Store(Path(folder) / "bench.duckdb")
        opened = store.opens
        first, t_first = timed(lambda: run_suite(suite, store))
        opens_first, opened = store.opens - opened, store.opens
        second, t_second = timed(lambda: run_suite(suite, store))
        opens_second = store.opens - opened
    cached = [m.record.info.get("requests_cached", 0) for m in [second.base, *second.candidates]]
    computed = [
        m.record.info.get("requests_computed", 0) for m in [second.base, *second.candidates]
    ]
    same = [m.metrics for m in [first.base, *first.candidates]] == [
        m.metrics for m in [second.base, *second.candidates]
    ]
    ratio = t_first / t_second
    print_table(
        [
            ("suite", suite.name),
            ("base", suite.models["base"]),
            ("torch threads", str(threads)),
            ("models", str(1 + len(second.candidates))),
            ("cases per model", str(sum(len(p.cases) for p in suite.checks))),
            ("first run", f"{t_first:.2f} s"),
            ("second run (cached)", f"{t_second:.2f} s"),
            ("second run requests cached/computed", f"{sum(cached)}/{sum(computed)}"),
            ("store opens first/second run", f"{opens_first}/{opens_second}"),
            ("identical metrics", str(same)),
            ("speed-up", f"{ratio:.1f}x  (target >= {TARGET:g}x)"),
        ]
    )
    print_json(
        {
            "benchmark": "cache",
            "suite": suite.name,
            "threads": threads,
            "first_s": round(t_first, 3),
            "second_s": round(t_second, 3),
            "speedup": round(ratio, 2),
            "opens_first": opens_first,
            "opens_second": opens_second,
            "identical": same,
        }
    )
    assert same and sum(computed) == 0


if __name__ == "__main__":
    main()
