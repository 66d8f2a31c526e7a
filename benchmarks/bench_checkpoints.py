"""What evaluating at checkpoints costs, as a share of training time, and what evaluating only
some capabilities at checkpoints saves.

    python benchmarks/bench_checkpoints.py [--every 10] [--steps 60] [--repeats 2]

The example suite's full fine-tune (suites/checkpoints.yaml, candidate `best`, `select: last` so
every variant trains the same steps) is trained with `--retrain` three ways, each into a fresh
store so no checkpoint output comes from the cache: without checkpoints; with checkpoints on
every capability; with checkpoints on the two capabilities the example names. Reported: the
training's wall time (checkpoint evaluations included, as they run inside the training loop),
the checkpoint evaluations' own time, their share of the training time, and the subset's
evaluation time against all capabilities'. Variants alternate over `--repeats` rounds after a
warm-up; medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO_ROOT, load_average, print_json, print_table

EXAMPLE = REPO_ROOT / "suites" / "checkpoints.yaml"
SUBSET = "[new_facts, known_facts]"


def suite_text(variant: str, every: int, steps: int) -> str:
    """The example with one candidate, `best`, trained `steps` steps and checkpointed as asked."""
    text = EXAMPLE.read_text().replace("path: data/", f"path: {EXAMPLE.parent / 'data'}/")
    head = text[: text.index("candidates:")]
    candidate = (
        "candidates:\n  - name: best\n    backend: full\n    data: new_facts_train\n"
        f"    args: {{learning_rate: 2.0e-4, max_steps: {steps}}}\n"
    )
    if variant == "all":
        candidate += f"    checkpoints: {{every: {every}}}\n"
    elif variant == "subset":
        candidate += f"    checkpoints: {{every: {every}, capabilities: {SUBSET}}}\n"
    return head + candidate


def train_once(
    directory: Path, variant: str, every: int, steps: int, round_: int
) -> dict[str, Any]:
    from harness.run import run_suite
    from harness.store import Store
    from harness.suite import load_suite

    path = directory / f"{variant}-{round_}.yaml"
    path.write_text(suite_text(variant, every, steps))
    store = Store(directory / f"{variant}-{round_}.duckdb")  # fresh: nothing cached
    result = run_suite(load_suite(path), store, retrain=True)
    candidate = result.candidates[0]
    if candidate.record.status == "error":
        raise SystemExit(f"{variant}: {candidate.record.error}")
    training = candidate.record.info["training"]
    points = training.get("checkpoints", {}).get("points", [])
    return {  # wall_seconds is training alone; checkpoint_seconds the evaluations inside it
        "wall": float(training["wall_seconds"]) + float(training.get("checkpoint_seconds", 0)),
        "checkpoint_eval": sum(float(p["seconds"]) for p in points),
        "checkpoints": len(points),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    directory = Path(tempfile.mkdtemp(prefix="bench-checkpoints-"))
    variants = ("none", "all", "subset")
    train_once(directory, "subset", args.every, args.every, -1)  # warm-up: imports, base built
    found: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    before = load_average()
    for round_ in range(args.repeats):
        for variant in variants:
            found[variant].append(train_once(directory, variant, args.every, args.steps, round_))
    after = load_average()

    def median(variant: str, key: str) -> float:
        return statistics.median(r[key] for r in found[variant])

    rows = [("load average before / after", f"{before} / {after}")]
    for variant in variants:
        wall, evaluation = median(variant, "wall"), median(variant, "checkpoint_eval")
        share = f", {evaluation / wall:.0%} of it evaluating" if evaluation else ""
        rows.append(
            (
                f"{variant}: training wall (median of {args.repeats})",
                f"{wall:.2f} s ({found[variant][0]['checkpoints']} checkpoints{share})",
            )
        )
    saving = median("subset", "checkpoint_eval") / median("all", "checkpoint_eval")
    overhead = median("all", "wall") / median("none", "wall")
    rows.append(("all capabilities: training time vs none", f"{overhead:.2f}x"))
    rows.append(
        (
            "subset: training time vs none",
            f"{median('subset', 'wall') / median('none', 'wall'):.2f}x",
        )
    )
    rows.append(("subset's checkpoint evaluation vs all", f"{saving:.2f}x"))
    print_table(rows)
    print_json(
        {
            "benchmark": "checkpoints",
            "every": args.every,
            "steps": args.steps,
            "repeats": args.repeats,
            **{
                f"{v}_{k}": round(median(v, k), 3)
                for v in variants
                for k in ("wall", "checkpoint_eval")
            },
            "subset_vs_all_evaluation": round(saving, 3),
        }
    )


if __name__ == "__main__":
    main()
