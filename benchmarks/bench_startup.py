"""A fully cached rerun against the start-up floor, as whole processes.

    python benchmarks/bench_startup.py [--suite suites/gate.yaml] [--repeats 5]

Runs the suite once into a fresh store (untimed: it builds, evaluates and fills the cache), then
times, alternately, `harness --help` and `harness run SUITE` on that store (everything cached),
each in a fresh interpreter, and reports the medians, their ratio, and whether the rerun imported
torch or transformers. Python writes bytecode here as on a user's machine
(PYTHONDONTWRITEBYTECODE is removed from the children's environment).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROBE = (
    "import sys\nfrom harness.cli import main\nsys.argv = ['harness', *sys.argv[1:]]\n"
    "try:\n    main()\nexcept SystemExit:\n    pass\n"
    "print('HEAVY', [m for m in ('torch', 'transformers') if m in sys.modules], file=sys.stderr)\n"
)


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env=env)
    elapsed = time.perf_counter() - start
    if result.returncode not in (0, 1):
        raise SystemExit(f"{argv} failed: {result.stderr[-2000:]}")
    return elapsed, result.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="suites/gate.yaml")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    harness = [sys.executable, "-m", "harness.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "h.duckdb")
        first, _ = timed([*harness, "run", args.suite, "--db", db], env)
        timed([*harness, "--help"], env)  # bytecode written for every module both import
        helps, reruns, heavy = [], [], ""
        for _ in range(args.repeats):
            helps.append(timed([*harness, "--help"], env)[0])
            seconds, stderr = timed(
                [sys.executable, "-c", PROBE, "run", args.suite, "--db", db], env
            )
            reruns.append(seconds)
            heavy = stderr.rsplit("HEAVY", 1)[-1].strip()
    help_s, rerun_s = statistics.median(helps), statistics.median(reruns)
    print(f"suite: {args.suite}; first run (untimed warm-up): {first:.2f} s")
    print(f"harness --help:        median {help_s:.2f} s  ({', '.join(f'{t:.2f}' for t in helps)})")
    print(
        f"cached rerun:          median {rerun_s:.2f} s  ({', '.join(f'{t:.2f}' for t in reruns)})"
    )
    print(f"rerun / --help:        {rerun_s / help_s:.2f}x  (goal <= 1.5x)")
    print(f"heavy libraries the rerun imported: {heavy}")


if __name__ == "__main__":
    main()
