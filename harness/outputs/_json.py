"""The machine-readable summary of a run (`harness run --json FILE`)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from harness.evaluation import ModelResult, RunResult, gate_status, index_metrics
from harness.outputs._text import candidate_warnings

# 2: gates have an `outcome` (pass / fail / inconclusive); candidates have `warnings`.
SUMMARY_VERSION = 2


def _number(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: they become null (an unbounded bound, an undefined p)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _metrics(candidate: ModelResult, base: ModelResult) -> list[dict[str, Any]]:
    base_values = index_metrics(base.metrics)
    rows = []
    for metric in candidate.metrics:
        key = (metric.capability, metric.metric)
        base_metric = base_values.get(key)
        base_value = base_metric.value if base_metric else None
        gates = [g for g in candidate.gates if (g.capability, g.metric) == key]
        rows.append(
            {
                "capability": metric.capability,
                "metric": metric.metric,
                "value": _number(metric.value),
                "base_value": _number(base_value),
                "delta": _number(metric.value - base_value) if base_value is not None else None,
                "ci": [_number(metric.ci_low), _number(metric.ci_high)],
                "n": metric.n,
                "gates": [
                    {
                        "kind": g.kind,
                        "limit": g.limit,
                        "outcome": g.outcome,
                        "status": gate_status(g, candidate.fail_on),
                        "passed": g.passed,
                        "message": g.message,
                    }
                    | _finite(g.details)
                    for g in gates
                ],
            }
        )
    return rows


def _model(result: ModelResult, base: ModelResult) -> dict[str, Any]:
    return {
        "name": result.record.name,
        "status": result.verdict,
        "reference": result.record.reference,
        "fingerprint": result.record.fingerprint,
        "error": result.record.error,
        "info": result.record.info,
        "training": result.record.info.get("training"),
        "metrics": _metrics(result, base),
        # failed gates whose kind --fail-on leaves out: reported, not failing the build
        "warn_only_failures": [
            {"capability": g.capability, "kind": g.kind, "metric": g.metric} for g in result.warned
        ],
        "inconclusive_gates": [
            {"capability": g.capability, "kind": g.kind, "metric": g.metric}
            for g in result.inconclusive
        ],
        "warnings": candidate_warnings(result) if result.record.status == "ok" else [],
    }


def run_summary(result: RunResult) -> dict[str, Any]:
    return {
        "summary_version": SUMMARY_VERSION,
        "run_id": result.run_id,
        "suite": result.suite,
        "status": result.status,
        "exit_code": result.exit_code,
        "source_run": result.source_run,  # set when `harness gate` re-decided a stored run
        "baseline": result.baseline,  # set when relative gates compared with a stored run
        "fail_on": sorted(result.candidates[0].fail_on) if result.candidates else None,
        # every warning of the run: each candidate's (also under its own entry) and the run's
        "warnings": [w for c in result.candidates for w in candidate_warnings(c)] + result.warnings,
        "base": {
            "reference": result.base.record.reference,
            "fingerprint": result.base.record.fingerprint,
            "status": result.base.record.status,
            "error": result.base.record.error,
            "info": result.base.record.info,
            "metrics": [
                {
                    "capability": m.capability,
                    "metric": m.metric,
                    "value": _number(m.value),
                    "ci": [_number(m.ci_low), _number(m.ci_high)],
                    "n": m.n,
                }
                for m in result.base.metrics
            ],
        },
        "candidates": [_model(c, result.base) for c in result.candidates],
    }


def write_summary(result: RunResult, path: Path) -> None:
    path.write_text(
        json.dumps(run_summary(result), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
