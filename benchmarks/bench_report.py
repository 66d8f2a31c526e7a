"""The HTML report at scale: 10,000 cases x (base + 5 candidates), rendered and opened in Chromium.

Targets (issue 5): render in under 5 s, open in Chromium in under 3 s. The store is written through
the Store API (no model runs); render time includes reading the run and its 60,000 case rows back.
Opening is measured two ways: the page's own clock (performance.now() when the first page of cases
is on screen, which the report writes into <html data-report-ready>) and Chromium's wall time for
--dump-dom of the report minus that of an empty page (the browser's own start-up).

    python benchmarks/bench_report.py [--cases 10000] [--candidates 5] [--repeats 3]
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.core.records import CaseResult, GateResult, MetricValue, ModelRecord
from harness.outputs.html import build_report
from harness.store import Store

CHECKS = [("facts", "qa"), ("facts", "mc"), ("arithmetic", "exact"), ("format", "json"), ("safety", "judge")]  # fmt: skip
WORDS = [
    "the",
    "of",
    "capital",
    "river",
    "what",
    "is",
    "answer",
    "model",
    "plus",
    "minus",
    "seven",
    "twelve",
    "city",
    "old",
    "new",
]


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def _cases(rng: random.Random, count: int, quality: float) -> list[CaseResult]:
    out = []
    for i in range(count):
        capability, check = CHECKS[i % len(CHECKS)]
        passed = rng.random() < quality
        answer = "yes seven" if passed else _text(rng, 4)
        prompt = f"Q{i}: {_text(rng, 14)}? A:"
        scores = {"acc": float(passed), "f1": 1.0 if passed else rng.random() * 0.5}
        out.append(
            CaseResult(
                capability, check, f"case-{i:05d}", prompt, "yes seven", answer, scores, passed
            )
        )
    return out


def _metrics(cases: list[CaseResult]) -> list[MetricValue]:
    out = []
    for capability, check in CHECKS:
        mine = [c for c in cases if c.check == check]
        value = sum(c.scores["acc"] for c in mine) / len(mine)
        out.append(
            MetricValue(capability, f"{check}.acc", value, value - 0.02, value + 0.02, len(mine))
        )
    return out


def write_store(path: Path, cases: int, candidates: int) -> str:
    rng = random.Random(0)
    store = Store(path)
    run_id = store.begin_run(suite_name="bench", suite_path="bench.yaml", suite_text="name: bench\n", suite_hash="h", config={})  # fmt: skip
    base_cases = _cases(rng, cases, 0.8)
    base_metrics = _metrics(base_cases)
    store.record_model_result(run_id, ModelRecord("base", "base", "builtin:tiny", "f", "ok"), base_cases, base_metrics, [])  # fmt: skip
    for k in range(candidates):
        mine = _cases(rng, cases, 0.7 + 0.05 * k)
        metrics = _metrics(mine)
        gates = [
            GateResult(m.capability, "forgetting", m.metric, m.value, b.value, m.value - b.value, 0.05, m.value - b.value >= -0.05, "forgetting")
            for m, b in zip(metrics, base_metrics, strict=True)
        ]  # fmt: skip
        info = {"training": {"wall_seconds": 60.0 * (k + 1), "peak_memory_bytes": 2**30 * (k + 1), "trainable_parameters": 10**6 * (k + 1), "total_parameters": 10**8, "tokens_per_second": 1000.0, "backend": "lora"}}  # fmt: skip
        store.record_model_result(run_id, ModelRecord(f"cand-{k}", "candidate", f"ckpt/{k}", "f", "ok", None, info), mine, metrics, gates)  # fmt: skip
        store.record_loss_curve(run_id, f"cand-{k}", [(s, 2.0 / (1 + s)) for s in range(200)])
    store.finish_run(run_id, status="regressed", exit_code=1)
    return run_id


def chromium_dump(chromium: str, html: Path, profile: Path) -> tuple[float, str]:
    command = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--dump-dom", html.resolve().as_uri(),
    ]  # fmt: skip
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    return time.perf_counter() - started, result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--candidates", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-report-"))
    run_id = write_store(tmp / "bench.duckdb", args.cases, args.candidates)
    renders = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        html = build_report(Store(tmp / "bench.duckdb"), [run_id])
        renders.append(time.perf_counter() - started)
    report = tmp / "report.html"
    report.write_text(html, encoding="utf-8")
    size = report.stat().st_size / 2**20
    print(f"{args.cases} cases x (base + {args.candidates} candidates): {size:.1f} MiB of HTML")
    print(
        f"render (read store + build view + Jinja): median {statistics.median(renders):.2f} s of {args.repeats}"
    )
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("chromium not installed: skipping the browser figures")
        return
    empty = tmp / "empty.html"
    empty.write_text("<!DOCTYPE html><title>empty</title><p>empty</p>")
    blank, opened, in_page = [], [], []
    for i in range(args.repeats):
        blank.append(chromium_dump(chromium, empty, tmp / f"p-empty-{i}")[0])
        seconds, dom = chromium_dump(chromium, report, tmp / f"p-report-{i}")
        opened.append(seconds)
        ready = re.search(r'data-report-ready="(\d+)"', dom)
        if ready is None:
            sys.exit("the report's script did not finish")
        in_page.append(int(ready.group(1)) / 1000)
    print(f"chromium --dump-dom, empty page: median {statistics.median(blank):.2f} s")
    print(f"chromium --dump-dom, report:     median {statistics.median(opened):.2f} s")
    print(
        f"open (report minus empty page):  median {statistics.median(opened) - statistics.median(blank):.2f} s"
    )
    print(
        f"in page, navigation to first page of cases shown: median {statistics.median(in_page):.2f} s"
    )
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
