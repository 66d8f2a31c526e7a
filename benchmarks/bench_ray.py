"""The Ray engine's overhead over the local one on an example suite, start-up included.

    python benchmarks/bench_ray.py [--suite suites/qa.yaml] [--address ADDRESS]

`harness run SUITE` as a user runs it (a fresh process each time, so start-up counts), four times
on one machine: the local engine, then `--ray` (a Ray instance started by the run, or the cluster
at --address), each first with `--retrain` into a fresh store (everything trained and evaluated)
and then again (artifacts and outputs reused). Reported: the wall times and Ray's ratio to local
for both. Both engines run the same models with the same settings; on a machine with one device
the Ray path can only add overhead, while it trains candidates side by side where there are
devices to share (see bench_parallel_training.py).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO_ROOT, print_json, print_table


def harness_run(suite: Path, db: Path, *extra: str) -> float:
    """Seconds for one `harness run` (exit 0, 1 and 3 are verdicts; anything else is a failure)."""
    command = [sys.executable, "-m", "harness.cli", "run", str(suite), "--db", str(db), *extra]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="suites/qa.yaml")
    parser.add_argument("--address", default="local", help="--ray's ADDRESS (default: local)")
    args = parser.parse_args()

    suite = (REPO_ROOT / args.suite).resolve()
    directory = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    os.environ.setdefault("HARNESS_HOME", str(directory / "home"))
    harness_run(suite, directory / "warm.duckdb")  # base built, page cache warm for both
    times: dict[str, float] = {}
    for engine, extra in (("local", ()), ("ray", ("--ray", args.address))):
        times[f"{engine}_trained_s"] = harness_run(
            suite, directory / f"{engine}.duckdb", "--retrain", *extra
        )
        times[f"{engine}_cached_s"] = harness_run(suite, directory / f"{engine}.duckdb", *extra)
    trained = times["ray_trained_s"] / times["local_trained_s"]
    cached = times["ray_cached_s"] / times["local_cached_s"]
    print_table(
        [
            ("suite", args.suite),
            ("local, everything trained and evaluated", f"{times['local_trained_s']:.1f} s"),
            ("ray, everything trained and evaluated", f"{times['ray_trained_s']:.1f} s"),
            ("ray / local", f"{trained:.2f}x"),
            ("local, rerun (all reused)", f"{times['local_cached_s']:.1f} s"),
            ("ray, rerun (all reused)", f"{times['ray_cached_s']:.1f} s"),
            ("ray / local, rerun", f"{cached:.2f}x"),
        ]
    )
    print_json(
        {
            "benchmark": "ray_overhead",
            "suite": args.suite,
            "address": args.address,
            "cpus": os.cpu_count(),
            **{k: round(v, 2) for k, v in times.items()},
            "ratio_trained": round(trained, 3),
            "ratio_cached": round(cached, 3),
        }
    )


if __name__ == "__main__":
    main()
