"""The shipped methods example (suites/methods.yaml): one candidate of every method from one base
and one data set, trained for real on the built-in tiny model, side by side in one run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.cli import harness, heavy_imports

from harness.store import Store

EXAMPLE = Path(__file__).resolve().parents[2] / "suites" / "methods.yaml"
BACKENDS = {
    "full", "lora", "qlora", "ia3", "prompt_tuning", "llama_adapter", "pretrain", "dpo", "orpo",
    "kto", "reward_model", "rloo", "grpo", "rft", "merge",
}  # fmt: skip


@pytest.mark.slow  # 21 candidates trained and evaluated on the CPU (a few minutes)
def test_every_method_trains_and_is_compared_in_one_run(tmp_path: Path) -> None:
    db, summary = tmp_path / "h.duckdb", tmp_path / "s.json"
    run = harness("run", str(EXAMPLE), "--db", str(db), "--json", str(summary), "--retrain")
    # Short trainings on a tiny model: regressions are expected, errors are not.
    assert run.returncode in (0, 1), run.stdout[-3000:] + run.stderr[-3000:]
    check_methods_run(run.stdout, json.loads(summary.read_text()), db)
    # A rerun is served from the artifacts and the store: no model loads, reward model included.
    assert (
        heavy_imports(
            ["run", str(EXAMPLE), "--db", str(db)], EXAMPLE.parent, exit_code=run.returncode
        )
        == []
    )


def check_methods_run(stdout: str, data: dict, db: Path) -> None:
    """What the run of the example must show (a function, so that a run made by hand can be
    checked with it too)."""
    found = {c["name"]: c for c in data["candidates"]}
    assert [n for n, c in found.items() if c["status"] == "error"] == []
    training = {n: c["info"]["training"] for n, c in found.items()}
    assert {t["backend"] for t in training.values()} == BACKENDS
    assert "methods: quality (gated metrics) and cost" in stdout

    # cost accounting: every method records what it trained, and adapters train a small share
    for name, t in training.items():
        assert t["wall_seconds"] > 0 and t["total_parameters"] > 0, name
    for name in ("lora", "qlora", "ia3", "prompt-tuning", "llama-adapter", "dpo", "orpo"):
        assert 0 < training[name]["trainable_parameters"] < training[name]["total_parameters"] / 5
    assert training["full"]["trainable_parameters"] == training["full"]["total_parameters"]
    top2 = training["full-top2"]
    assert top2["trainable_parameters"] < training["full"]["trainable_parameters"]
    assert training["merged"]["trainable_parameters"] == 0
    assert training["merged"]["method"]["merged"] == ["full", "lora"]

    # method records: replay rows, RFT's kept samples (audited in kept.jsonl), the reward model
    assert training["full-replay"]["replay"] == {"data": "replay", "ratio": 0.3, "rows": 9}
    rft = training["rft"]["method"]
    kept = (Path(training["rft"]["artifact"]) / "model" / "kept.jsonl").read_text().splitlines()
    assert 0 < rft["kept"] == len(kept) <= rft["passed"] <= rft["sampled"] == 240

    # the reward model is judged on held-out pairs alone, by its reward head
    reward_model = found["reward-model"]
    assert {m["capability"] for m in reward_model["metrics"]} == {"ranking"}
    assert 0.0 <= _value(reward_model, "preference.accuracy") <= 1.0
    # a candidate that learned the new facts shows it; the base ranks what it knows
    assert _value(found["lora"], "qa.f1") > 0.5
    stored = Store(db).load_run(data["run_id"])
    assert set(found) <= set(stored.loss_curves) | {"merged"}  # every training's curve kept


def _value(candidate: dict, metric: str) -> float:
    return next(m["value"] for m in candidate["metrics"] if m["metric"] == metric)
