"""History and compare are pure functions over stored results: tested on hand-built results, and
once on runs read back from a real store."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.core.records import CaseResult, GateResult, MetricValue, ModelRecord
from harness.outputs._history import (
    RunMetrics,
    RunSide,
    compare_runs,
    direction,
    metric_history,
    recorded_lower_is_better,
    verdict_of,
    verdict_reason,
)
from harness.store import Store

BASE = ModelRecord("base", "base", "builtin:tiny", "f0", "ok")
CAND = ModelRecord("lora", "candidate", "ckpt", "f1", "ok")
SUITE = "name: s\ncapabilities:\n  - name: lm\n    checks: [{type: perplexity, name: ppl}]\n"


def metric(capability: str, name: str, value: float, half: float = 0.05) -> MetricValue:
    return MetricValue(capability, name, value, value - half, value + half, 10)


def case(case_id: str, passed: bool | None, output: str = "x") -> CaseResult:
    return CaseResult("arith", "exact", case_id, f"prompt {case_id}", "5", output, {}, passed)


def gate(passed: bool, message: str = "exact.acc fell 0.3") -> GateResult:
    outcome = "pass" if passed else "fail"
    return GateResult("arith", "forgetting", "exact.acc", 0.5, 0.8, -0.3, 0.05, outcome, message)


def test_verdicts_match_the_runner() -> None:
    assert verdict_of(CAND, [gate(True)]) == "passed"
    assert verdict_of(CAND, [gate(True), gate(False)]) == "regressed"
    broken = ModelRecord("x", "candidate", "ckpt", None, "error", "OSError: gone")
    assert verdict_of(broken, []) == "error"
    assert verdict_reason(broken, []) == "OSError: gone"
    assert verdict_reason(CAND, [gate(False)]) == "arith: exact.acc fell 0.3"
    assert verdict_reason(CAND, [gate(True), gate(True)]) == "all 2 gates held"


def test_lower_is_better_is_what_each_metric_recorded() -> None:
    ppl = MetricValue("lm", "ppl.perplexity", 9.0, 8.0, 10.0, 5, lower_is_better=True)
    named_like_a_loss = metric("lm", "judge.loss", 0.4)  # recorded as higher-is-better
    assert recorded_lower_is_better({"base": [ppl, named_like_a_loss]}) == {"ppl.perplexity"}
    assert direction(-0.2, lower_is_better=True) == "better"
    assert direction(-0.2, lower_is_better=False) == "worse"
    assert direction(0.0, lower_is_better=False) == "same"


def test_metric_history_orders_runs_and_follows_each_series() -> None:
    runs = [
        RunMetrics("20260102-000000-bbbb", {"base": [metric("a", "exact.acc", 0.7)]}),
        RunMetrics(
            "20260101-000000-aaaa",
            {"base": [metric("a", "exact.acc", 0.5)], "lora": [metric("a", "exact.acc", 0.9)]},
        ),
    ]
    series = {(s.model, s.metric): s for s in metric_history(runs)}
    base = series[("base", "exact.acc")]
    assert [p.run_id[:8] for p in base.points] == ["20260101", "20260102"]
    assert base.change == pytest.approx(0.2)
    assert series[("lora", "exact.acc")].change is None  # one point only


def _side(run_id: str, acc: float, outputs: dict[str, tuple[bool, str]], gates_ok: bool) -> RunSide:
    cases = [case(i, p, o) for i, (p, o) in outputs.items()]
    return RunSide(
        run_id,
        [BASE, CAND],
        {"base": [metric("arith", "exact.acc", 0.8)], "lora": [metric("arith", "exact.acc", acc)]},
        {"lora": [gate(gates_ok)]},
        {"lora": cases},
    )


def test_compare_finds_metric_changes_flips_and_verdicts() -> None:
    a = _side("A", 0.8, {"c1": (True, "5"), "c2": (False, "7"), "c3": (True, "5")}, True)
    b = _side("B", 0.5, {"c1": (False, "6"), "c2": (True, "5"), "c3": (True, "5 ")}, False)
    result = compare_runs(a, b)
    assert [(v.model, v.a, v.b) for v in result.verdicts] == [("lora", "passed", "regressed")]
    by_model = {c.model: c for c in result.metrics}
    assert by_model["lora"].direction == "worse" and by_model["lora"].beyond_noise
    assert by_model["base"].direction == "same" and not by_model["base"].beyond_noise
    assert [f.case_id for f in result.regressions] == ["c1"]
    assert [f.case_id for f in result.fixes] == ["c2"]
    assert result.regressions[0].output_a == "5" and result.regressions[0].output_b == "6"
    assert result.outputs_changed == 3


def test_compare_reports_models_and_metrics_present_on_one_side_only() -> None:
    a = _side("A", 0.8, {}, True)
    b = RunSide("B", [BASE], {"base": [metric("arith", "qa.f1", 0.3)]}, {}, {})
    result = compare_runs(a, b)
    directions = {(c.model, c.metric): c.direction for c in result.metrics}
    assert directions == {
        ("base", "exact.acc"): "gone",
        ("base", "qa.f1"): "new",
        ("lora", "exact.acc"): "gone",
    }
    assert [(v.model, v.a, v.b) for v in result.verdicts] == [("lora", "passed", None)]


def test_compare_on_runs_read_back_from_a_real_store(tmp_path: Path) -> None:
    store = Store(tmp_path / "h.duckdb")
    ids = []
    for acc, passed in ((0.9, True), (0.4, False)):
        run_id = store.begin_run(
            suite_name="s", suite_path="s.yaml", suite_text=SUITE, suite_hash="h", config={}
        )
        store.record_model_result(
            run_id, BASE, [case("c1", True)], [metric("arith", "exact.acc", 0.8)], []
        )
        cases = [case("c1", passed, "5" if passed else "55")]
        store.record_model_result(
            run_id, CAND, cases, [metric("arith", "exact.acc", acc)], [gate(passed)]
        )
        store.finish_run(run_id, status="passed" if passed else "regressed", exit_code=1 - passed)
        ids.append(run_id)

    def side(run_id: str) -> RunSide:
        run = store.load_run(run_id)
        cases: dict[str, list[CaseResult]] = {}
        for model, c in store.load_cases(run_id):
            cases.setdefault(model, []).append(c)
        return RunSide(run_id, run.models, run.metrics, run.gates, cases)

    result = compare_runs(side(ids[0]), side(ids[1]))
    assert [(f.model, f.case_id, f.output_a, f.output_b) for f in result.flips] == [
        ("lora", "c1", "5", "55")
    ]
    history = metric_history(
        [
            RunMetrics(i, r.metrics, r.summary.started_at)
            for i in ids[::-1]
            if (r := store.load_run(i))
        ]
    )
    lora = next(s for s in history if s.model == "lora")
    assert lora.change == pytest.approx(-0.5) and not lora.lower_is_better
