"""Evaluation during training, for real, on the shipped example (suites/checkpoints.yaml): a
full fine-tune of the built-in model evaluated every 10 steps. New facts rise while old facts
fall; `best-passing` keeps the checkpoint that passes both gates, `stop_on: forgetting` ends a
run that keeps forgetting, and a rerun reuses it all. Then the same on every other backend."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers.cli import harness

from harness.store import Store

EXAMPLE = Path(__file__).resolve().parents[2] / "suites" / "checkpoints.yaml"


def hand_picked(points: list[dict[str, Any]]) -> int:
    """best-passing, by hand: of the checkpoints whose every gate passed, the highest new-facts
    F1, the earliest on a tie."""
    passing = [p for p in points if all(g["outcome"] == "pass" for g in p["gates"]) and p["gates"]]
    f1 = {
        p["step"]: next(g["value"] for g in p["gates"] if g["kind"] == "improve") for p in passing
    }
    return min(f1, key=lambda step: (-f1[step], step))


@pytest.mark.slow  # two full fine-tunes of the tiny model, evaluated every 10 steps (~2 min)
def test_checkpoints_curves_selection_early_stop_and_a_cached_rerun(tmp_path: Path) -> None:
    suite = EXAMPLE  # the shipped example suite
    db, summary = str(tmp_path / "h.duckdb"), tmp_path / "s.json"
    # --retrain: the harness home (and its artifacts) outlives a test session
    first = harness("run", str(suite), "--db", db, "--json", str(summary), "--retrain")
    assert first.returncode in (0, 1), first.stdout + first.stderr
    data = json.loads(summary.read_text())
    candidates = {c["name"]: c for c in data["candidates"]}

    # Every checkpoint is recorded with its metrics and gates: the forgetting curve.
    best = candidates["best"]["info"]["training"]["checkpoints"]
    assert [p["step"] for p in best["points"]] == [10, 20, 30, 40, 50, 60]
    old = [_value(p, "known_facts", "qa.em") for p in best["points"]]
    new = [_value(p, "new_facts", "qa.f1") for p in best["points"]]
    assert new[-1] > new[0] and old[-1] < old[0]  # learns the new facts, forgets old ones

    # best-passing keeps the checkpoint a hand check picks, and the candidate is those weights.
    picked = hand_picked(best["points"])
    assert picked < 60 and best["selected_step"] == picked, best
    chosen = next(p for p in best["points"] if p["step"] == picked)
    assert candidates["best"]["fingerprint"] == chosen["fingerprint"]
    assert f"checkpoint step {picked}: passed" in first.stdout + first.stderr

    # stop_on: forgetting ends the run after two failing checkpoints in a row, before step 80.
    stopped = candidates["stopped"]["info"]["training"]["checkpoints"]
    steps = [p["step"] for p in stopped["points"]]
    assert stopped["stopped_at"] == steps[-1] < stopped["total_steps"] == 80, stopped
    assert f"selected step {steps[-1]} of 80 (last); stopped early" in first.stdout
    assert [p["passed"] for p in stopped["points"][-2:]] == [False, False]
    assert "forgetting gate failed" in stopped["stop_reason"]
    training = candidates["stopped"]["info"]["training"]
    evaluating = sum(p["seconds"] for p in stopped["points"])
    assert training["checkpoint_seconds"] == pytest.approx(evaluating, abs=0.01)
    curve = Store(Path(db)).load_run(data["run_id"]).loss_curves["stopped"]
    assert curve[-1][0] == steps[-1]  # the training really ended there

    # A rerun reuses the artifacts, their checkpoint records and every output: nothing computed.
    second = harness("run", str(suite), "--db", db, "--json", str(summary))
    assert second.returncode == first.returncode
    again = {c["name"]: c for c in json.loads(summary.read_text())["candidates"]}
    for name in ("best", "stopped"):
        info = again[name]["info"]
        assert info["training"]["reused_artifact"] and info["requests_computed"] == 0
        assert (
            info["training"]["checkpoints"] == candidates[name]["info"]["training"]["checkpoints"]
        )
    assert "checkpoint step" not in second.stdout + second.stderr


def _value(point: dict[str, Any], capability: str, metric: str) -> float:
    return next(
        m["value"]
        for m in point["metrics"]
        if (m["capability"], m["metric"]) == (capability, metric)
    )


EVERY_BACKEND = f"""\
name: checkpoints-everywhere
base: builtin:tiny
generation: {{max_new_tokens: 8, stop: ["\\n"], batch_size: 32}}
data:
  new_facts: {{path: {EXAMPLE.parent / "data" / "new_facts.jsonl"}}}
  train: {{path: {EXAMPLE.parent / "data" / "new_facts_train.jsonl"}}}
  prefs: {{path: {EXAMPLE.parent / "data" / "new_facts_prefs.jsonl"}}}
capabilities:
  - name: new_facts
    improve: {{metric: qa.f1, min_gain: 0.1, mode: point}}
    checks: [{{type: qa, data: new_facts}}]
candidates:
  - {{name: lora, backend: lora, data: train, checkpoints: {{every: 2}},
     args: {{learning_rate: 3.0e-3, max_steps: 4}}}}
  - {{name: qlora, backend: qlora, data: train, checkpoints: {{every: 2}},
     args: {{learning_rate: 3.0e-3, max_steps: 4}}}}
  - {{name: dpo, backend: dpo, data: prefs, checkpoints: {{every: 2}},
     args: {{learning_rate: 3.0e-3, max_steps: 4}}}}
  - {{name: grpo, backend: grpo, data: new_facts, reward: {{check: new_facts, metric: f1}},
     checkpoints: {{every: 2}},
     args: {{learning_rate: 3.0e-3, max_steps: 4, num_generations: 4, max_completion_length: 8}}}}
"""


@pytest.mark.slow  # four short trainings, two checkpoints each (~1 min)
def test_every_backend_is_evaluated_at_its_checkpoints(tmp_path: Path) -> None:
    suite = tmp_path / "everywhere.yaml"
    suite.write_text(EVERY_BACKEND)
    summary = tmp_path / "s.json"
    db = str(tmp_path / "h.duckdb")
    result = harness("run", str(suite), "--db", db, "--json", str(summary), "--retrain")
    assert result.returncode in (0, 1), result.stdout + result.stderr
    candidates = {c["name"]: c for c in json.loads(summary.read_text())["candidates"]}
    for name in ("lora", "qlora", "dpo", "grpo"):
        checkpoints = candidates[name]["info"]["training"]["checkpoints"]
        assert [p["step"] for p in checkpoints["points"]] == [2, 4], name
        assert checkpoints["selected_step"] == 4
    # An adapter evaluated in memory is the adapter loaded from disk: same weights, same
    # fingerprint, so the final evaluation found the last checkpoint's outputs cached.
    lora = candidates["lora"]
    assert (
        lora["fingerprint"] == lora["info"]["training"]["checkpoints"]["points"][-1]["fingerprint"]
    )
    assert lora["info"]["requests_computed"] == 0
