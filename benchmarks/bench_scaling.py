"""Suite size scaling (100, 1,000, 10,000 cases) and the physical floor of the same workload.

    python benchmarks/bench_scaling.py [--sizes 100,1000,10000] [--threads 1]

For each size, a suite with one `exact` check over N generated sums prompts ("Q: What is A plus
B? A:", expected the sum) on builtin:tiny (base only, no candidates) goes through one `run_suite`
into a fresh DuckDB store: wall time, peak RSS (a thread samples psutil every 5 ms; reported as
the rise over the RSS just before the run, the process's runtime excluded) and the store file's
size. Then, in the same process, the floor: the model's forward passes alone for the largest
workload, i.e. the same prompts pre-tokenized, in the same batches (longest first, 32 a batch,
left-padded), `model.generate` greedy with the same max_new_tokens and newline stop, nothing
cached, scored or stored. harness time / floor time is the harness's overhead.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import apply_threads, arithmetic_prompt, print_json, timed

MAX_NEW_TOKENS = 8
BATCH = 32


def cases(count: int, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    pairs = [(rng.randint(0, 99), rng.randint(0, 99)) for _ in range(count)]
    return [{"prompt": arithmetic_prompt(a, b), "expected": str(a + b)} for a, b in pairs]


def write_suite(folder: Path, count: int) -> Path:
    data = folder / "sums.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in cases(count)))
    suite = folder / "suite.yaml"
    suite.write_text(
        f"name: scale-{count}\nbase: builtin:tiny\n"
        f"generation: {{max_new_tokens: {MAX_NEW_TOKENS}, stop: ['\\n'], batch_size: {BATCH}}}\n"
        f"data: {{sums: {{path: {data.name}}}}}\n"
        "capabilities:\n  - name: arithmetic\n    checks: [{type: exact, data: sums}]\n"
    )
    return suite


class PeakRss:
    """Largest RSS of this process while the block runs (sampled in a thread)."""

    def __init__(self, interval: float = 0.005) -> None:
        import psutil

        self._process = psutil.Process()
        self.before = self.peak = self._process.memory_info().rss
        self._interval, self._stop = interval, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            time.sleep(self._interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def harness_run(count: int) -> dict[str, Any]:
    """One run_suite of `count` cases into a fresh store."""
    from harness.run import run_suite
    from harness.store import Store
    from harness.suite import load_suite

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        suite = load_suite(write_suite(folder, count))
        db = folder / "bench.duckdb"
        with PeakRss() as rss:
            result, seconds = timed(lambda: run_suite(suite, Store(db)))
        size = db.stat().st_size + sum(p.stat().st_size for p in folder.glob("bench.duckdb.wal"))
    accuracy = next((m.value for m in result.base.metrics if m.metric.endswith("acc")), None)
    return {
        "cases": count,
        "seconds": seconds,
        "rss_rise_bytes": rss.peak - rss.before,
        "peak_rss_bytes": rss.peak,
        "store_bytes": size,
        "accuracy": accuracy,
    }


def floor(count: int) -> float:
    """Seconds of model.generate alone over the same prompts, batches and settings."""
    import torch
    from transformers import GenerationConfig, StoppingCriteriaList

    from harness.generation._tokens import _left_pad
    from harness.generation._transformers import _StopStrings
    from harness.models.loading import load_model

    lm = load_model("builtin:tiny")
    tokenizer, model = lm.tokenizer, lm.model
    encoded = [tokenizer(row["prompt"])["input_ids"] for row in cases(count)]
    encoded.sort(key=len, reverse=True)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    batches = [
        _left_pad(encoded[i : i + BATCH], pad, model.device) for i in range(0, len(encoded), BATCH)
    ]
    config = GenerationConfig(
        max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=pad,
    )  # fmt: skip
    start = time.perf_counter()
    with torch.inference_mode():
        for input_ids, attention_mask in batches:
            stop = StoppingCriteriaList([_StopStrings(tokenizer, ("\n",), input_ids.shape[1])])
            model.generate(
                input_ids=input_ids, attention_mask=attention_mask,
                generation_config=config, stopping_criteria=stop,
            )  # fmt: skip
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    threads = apply_threads(args.threads)

    from harness.models.builtin import ensure_builtin

    ensure_builtin("tiny")  # built before timing
    harness_run(50)  # warm-up: imports, first model load, DuckDB
    rows = [harness_run(int(size)) for size in args.sizes.split(",")]
    largest = rows[-1]["cases"]
    floor(min(largest, 256))  # warm-up
    floor_s = floor(largest)
    mib = 2**20
    print(
        f"torch threads {threads}; exact check, builtin:tiny, max_new_tokens {MAX_NEW_TOKENS}, batch {BATCH}"
    )
    print(
        f"{'cases':>7} {'wall s':>8} {'ms/case':>8} {'RSS rise MiB':>13} {'peak RSS MiB':>13} {'store MiB':>10} {'KiB/case':>9}"
    )
    for r in rows:
        print(
            f"{r['cases']:>7} {r['seconds']:>8.2f} {1000 * r['seconds'] / r['cases']:>8.2f} "
            f"{r['rss_rise_bytes'] / mib:>13.1f} {r['peak_rss_bytes'] / mib:>13.1f} "
            f"{r['store_bytes'] / mib:>10.2f} {r['store_bytes'] / 1024 / r['cases']:>9.2f}"
        )
    overhead = rows[-1]["seconds"] / floor_s
    print(f"floor: model.generate alone on the {largest} prompts: {floor_s:.2f} s "
          f"({1000 * floor_s / largest:.2f} ms/case); harness run / floor = {overhead:.2f}x")  # fmt: skip
    print_json(
        {
            "benchmark": "scaling",
            "threads": threads,
            "runs": rows,
            "floor_s": floor_s,
            "overhead": overhead,
        }
    )


if __name__ == "__main__":
    main()
