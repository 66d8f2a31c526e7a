"""Multiple choice through lm-eval vs through `Engine.loglikelihood`: same accuracies, timed.

    python benchmarks/bench_loglik_vs_lmeval.py [--model builtin:tiny|random|DIR] [--threads 1]
        [--batch-size 32] [--repeats 1]

Runs the local task benchmarks/tasks/arith_mc.yaml with lm-eval's `simple_evaluate` on HFLM, and
the same items through a harness suite's `choice` check (harness/checks/choice.py). The accuracies
must be identical; the target is harness time / lm-eval time <= 1.0 (each timed after a warm-up;
with `--repeats N`, N alternating rounds and the medians, for a machine whose load varies).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    REPO_ROOT,
    apply_threads,
    common_arguments,
    load,
    print_json,
    print_table,
    timed,
)

TASK = "harness_arith_mc"
TASKS_DIR = REPO_ROOT / "benchmarks" / "tasks"
DATA = TASKS_DIR / "arith_mc.jsonl"
TARGET_DELIMITER = " "  # lm-eval's default target_delimiter for multiple choice
TARGET = 1.0


def read_items() -> list[dict[str, Any]]:
    return [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]


def choice_requests(items: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(it["question"], f"{TARGET_DELIMITER}{c}") for it in items for c in it["choices"]]


SUITE = f"""\
name: bench-choice
base: builtin:tiny
data: {{items: {{path: {DATA}}}}}
capabilities:
  - name: arithmetic
    checks: [{{type: choice, data: items, prompt: "{{question}}", target_delimiter: "{TARGET_DELIMITER}"}}]
"""


def harness_accuracy(engine: Any) -> dict[str, float]:
    """The harness side, end to end: load a suite with a `choice` check, run it, average."""
    import tempfile

    from harness.checks import EvalContext
    from harness.generation import GenerationSettings
    from harness.suite import load_suite

    with tempfile.TemporaryDirectory() as folder:
        suite_file = Path(folder) / "suite.yaml"
        suite_file.write_text(SUITE)
        (planned,) = load_suite(suite_file).checks
    outcomes = planned.check.run(
        planned.cases, planned.spec, EvalContext(engine, GenerationSettings())
    )
    return {
        metric: sum(o.scores[metric] for o in outcomes) / len(outcomes)
        for metric in ("acc", "acc_norm")
    }


def lmeval_accuracy(hflm: Any, task_manager: Any) -> dict[str, float]:
    """The lm-eval side, end to end: build the task from its YAML, load the data, evaluate."""
    from lm_eval import simple_evaluate

    out = simple_evaluate(
        model=hflm, tasks=[TASK], task_manager=task_manager, log_samples=False, bootstrap_iters=0
    )
    metrics = out["results"][TASK]
    return {"acc": metrics["acc,none"], "acc_norm": metrics["acc_norm,none"]}


def model_only(engine: Any, hflm: Any) -> dict[str, float]:
    """Just the scoring calls on the same requests: time and agreement per request."""
    from lm_eval.api.instance import Instance

    requests = choice_requests(read_items())
    instances = [
        Instance(request_type="loglikelihood", doc={}, arguments=r, idx=i)
        for i, r in enumerate(requests)
    ]
    theirs, t_theirs = timed(lambda: hflm.loglikelihood(instances, disable_tqdm=True))
    ours, t_ours = timed(lambda: engine.loglikelihood(requests))
    return {
        "lmeval_s": t_theirs,
        "harness_s": t_ours,
        "requests": len(requests),
        "max_abs_diff": max(abs(o.logprob - t[0]) for o, t in zip(ours, theirs, strict=True)),
        "greedy_agree": sum(o.is_greedy == t[1] for o, t in zip(ours, theirs, strict=True)),
    }


def runs(times: list[float]) -> str:
    return "[" + ", ".join(f"{t:.2f}" for t in times) + "]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--repeats", type=int, default=1, help="timed rounds, alternating; medians are reported"
    )
    args = parser.parse_args()

    import logging

    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from harness.generation import Engine

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    os.chdir(REPO_ROOT)  # the task's data_files path is relative to the repo root
    if not DATA.exists():
        import runpy

        runpy.run_path(str(TASKS_DIR / "make_arith_mc.py"), run_name="__main__")
    threads = apply_threads(args.threads)
    lm = load(args.model)
    hflm = HFLM(pretrained=lm.model, tokenizer=lm.tokenizer, batch_size=args.batch_size)
    engine = Engine(lm, batch_size=args.batch_size)  # no cache: every run computes
    task_manager = TaskManager(include_path=str(TASKS_DIR))  # indexing all tasks: not timed

    lmeval_accuracy(hflm, task_manager)  # warm-up (also fills the datasets cache)
    harness_accuracy(engine)
    ends_theirs, ends_ours, rounds = [], [], []
    for _ in range(args.repeats):
        theirs, t = timed(lambda: lmeval_accuracy(hflm, task_manager))
        ends_theirs.append(t)
        ours, t = timed(lambda: harness_accuracy(engine))
        ends_ours.append(t)
        rounds.append(model_only(engine, hflm))
    t_theirs, t_ours = statistics.median(ends_theirs), statistics.median(ends_ours)
    calls = {
        "lmeval_s": statistics.median(r["lmeval_s"] for r in rounds),
        "harness_s": statistics.median(r["harness_s"] for r in rounds),
        "requests": rounds[0]["requests"],
        "max_abs_diff": max(r["max_abs_diff"] for r in rounds),
        "greedy_agree": min(r["greedy_agree"] for r in rounds),
    }
    ratio, calls_ratio = t_ours / t_theirs, calls["harness_s"] / calls["lmeval_s"]
    same = theirs == ours
    print_table(
        [
            ("model", args.model),
            ("torch threads", str(threads)),
            ("items x choices", f"{len(read_items())} x 4 = {calls['requests']} requests"),
            ("acc        lm-eval / harness", f"{theirs['acc']:.4f} / {ours['acc']:.4f}"),
            ("acc_norm   lm-eval / harness", f"{theirs['acc_norm']:.4f} / {ours['acc_norm']:.4f}"),
            ("identical accuracies", str(same)),
            ("timed rounds", f"{args.repeats} (medians; every run in brackets)"),
            (
                "end to end lm-eval",
                f"{t_theirs:.2f} s (simple_evaluate, task from YAML) {runs(ends_theirs)}",
            ),
            (
                "end to end harness",
                f"{t_ours:.2f} s (read jsonl, score, average) {runs(ends_ours)}",
            ),
            ("ratio harness/lm-eval", f"{ratio:.2f}  (target <= {TARGET})"),
            (
                "scoring only lm-eval",
                f"{calls['lmeval_s']:.2f} s (HFLM.loglikelihood) "
                + runs([r["lmeval_s"] for r in rounds]),
            ),
            (
                "scoring only harness",
                f"{calls['harness_s']:.2f} s (Engine.loglikelihood) "
                + runs([r["harness_s"] for r in rounds]),
            ),
            ("ratio scoring only", f"{calls_ratio:.2f}"),
            ("max |logprob diff|", f"{calls['max_abs_diff']:.2e}"),
            ("is_greedy agreement", f"{calls['greedy_agree']}/{calls['requests']}"),
        ]
    )
    print_json(
        {
            "benchmark": "loglik_vs_lmeval",
            "model": args.model,
            "threads": threads,
            "batch_size": args.batch_size,
            "lmeval": theirs,
            "harness": ours,
            "identical": same,
            "lmeval_s": round(t_theirs, 4),
            "harness_s": round(t_ours, 4),
            "ratio": round(ratio, 3),
            "scoring_lmeval_s": round(calls["lmeval_s"], 4),
            "scoring_harness_s": round(calls["harness_s"], 4),
            "scoring_ratio": round(calls_ratio, 3),
            "max_abs_diff": calls["max_abs_diff"],
            "repeats": args.repeats,
            "lmeval_runs_s": [round(t, 4) for t in ends_theirs],
            "harness_runs_s": [round(t, 4) for t in ends_ours],
            "scoring_lmeval_runs_s": [round(r["lmeval_s"], 4) for r in rounds],
            "scoring_harness_runs_s": [round(r["harness_s"], 4) for r in rounds],
        }
    )
    assert same, f"accuracies differ: lm-eval {theirs}, harness {ours}"


if __name__ == "__main__":
    main()
