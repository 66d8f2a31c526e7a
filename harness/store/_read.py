"""Reading results back: run summaries, stored runs, their models, metrics, gates, case counts and loss curves."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb

from harness.core.errors import HarnessError
from harness.core.records import CaseResult, GateResult, MetricValue, ModelRecord
from harness.store._values import _loads, _scalar, _utc

FINAL_STATUSES = ("passed", "inconclusive", "regressed", "error")


@dataclass(frozen=True)
class CaseCounts:
    """A model's case count in a run, and how they came out (passed=None counts as neither)."""

    total: int
    passed: int
    failed: int


@dataclass(frozen=True)
class RunSummary:
    """One row of `harness runs`."""

    id: str
    suite_name: str
    suite_path: str | None
    suite_hash: str | None
    # running / passed / inconclusive / regressed / error, or 'interrupted' (running, writer gone)
    status: str
    exit_code: int | None
    started_at: datetime  # UTC
    finished_at: datetime | None  # UTC
    host: str | None
    pid: int | None
    models: tuple[str, ...]
    gates_passed: int
    gates_failed: int
    gates_inconclusive: int = 0

    @property
    def duration_s(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class StoredRun:
    """Everything stored about one run except its cases (see `Store.load_cases`)."""

    summary: RunSummary
    suite_text: str | None
    config: dict[str, Any]
    harness_version: str | None
    library_versions: dict[str, str]
    models: tuple[ModelRecord, ...]  # in the order they were first recorded
    metrics: dict[str, tuple[MetricValue, ...]]  # model name -> metrics
    gates: dict[str, tuple[GateResult, ...]]  # model name -> gate verdicts
    case_counts: dict[str, CaseCounts]  # model name -> counts
    loss_curves: dict[str, tuple[tuple[int, float], ...]]  # model name -> (step, loss)

    @property
    def id(self) -> str:
        return self.summary.id

    @property
    def status(self) -> str:
        return self.summary.status

    def model(self, name: str) -> ModelRecord:
        """The model called `name` in this run; KeyError if there is none."""
        for record in self.models:
            if record.name == name:
                return record
        raise KeyError(name)


_SUMMARY_SQL = """
SELECT r.id, r.suite_name, r.suite_path, r.suite_hash, r.status, r.exit_code, r.started_at,
       r.finished_at, r.host, r.pid,
       (SELECT list(m.name ORDER BY m.seq) FROM models m WHERE m.run_id = r.id),
       (SELECT count(*) FILTER (WHERE g.outcome = 'pass') FROM gates g WHERE g.run_id = r.id),
       (SELECT count(*) FILTER (WHERE g.outcome = 'fail') FROM gates g WHERE g.run_id = r.id),
       (SELECT count(*) FILTER (WHERE g.outcome = 'inconclusive') FROM gates g
        WHERE g.run_id = r.id)
FROM runs r
"""


def _summary(row: tuple[Any, ...]) -> RunSummary:
    status = row[4]
    if status == "running" and not _writer_alive(row[8], row[9]):
        status = "interrupted"
    return RunSummary(
        id=row[0],
        suite_name=row[1],
        suite_path=row[2],
        suite_hash=row[3],
        status=status,
        exit_code=row[5],
        started_at=_utc(row[6]),
        finished_at=_utc(row[7]) if row[7] is not None else None,
        host=row[8],
        pid=row[9],
        models=tuple(row[10] or ()),
        gates_passed=int(row[11] or 0),
        gates_failed=int(row[12] or 0),
        gates_inconclusive=int(row[13] or 0),
    )


def _writer_alive(host: str | None, pid: int | None) -> bool:
    """Whether the process that began a run still exists (on another host we cannot tell: yes)."""
    if host != socket.gethostname() or pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _load_models(con: duckdb.DuckDBPyConnection, run_id: str) -> tuple[ModelRecord, ...]:
    rows = con.execute(
        "SELECT name, role, reference, fingerprint, status, error, info FROM models "
        "WHERE run_id = ? ORDER BY seq",
        [run_id],
    ).fetchall()
    return tuple(
        ModelRecord(
            name=r[0],
            role=r[1],
            reference=r[2],
            fingerprint=r[3],
            status=r[4],
            error=r[5],
            info=_loads(r[6]),
        )
        for r in rows
    )


def _load_metrics(
    con: duckdb.DuckDBPyConnection, run_id: str
) -> dict[str, tuple[MetricValue, ...]]:
    rows = con.execute(
        "SELECT model_name, capability, metric, value, ci_low, ci_high, n, lower_is_better "
        "FROM metrics "
        "WHERE run_id = ? ORDER BY model_name, seq",
        [run_id],
    ).fetchall()
    grouped: dict[str, list[MetricValue]] = {}
    for r in rows:
        metric = MetricValue(r[1], r[2], r[3], r[4], r[5], r[6], lower_is_better=bool(r[7]))
        grouped.setdefault(r[0], []).append(metric)
    return {name: tuple(values) for name, values in grouped.items()}


def _load_gates(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, tuple[GateResult, ...]]:
    rows = con.execute(
        "SELECT model_name, capability, kind, metric, value, base_value, delta, limit_value, "
        "outcome, message, details FROM gates WHERE run_id = ? ORDER BY model_name, seq",
        [run_id],
    ).fetchall()
    grouped: dict[str, list[GateResult]] = {}
    for r in rows:
        capability, kind, metric, value, base_value, delta, limit, outcome, message = r[1:10]
        details = json.loads(r[10]) if r[10] else {}
        gate = GateResult(
            capability, kind, metric, value, base_value, delta, limit, outcome, message, details
        )
        grouped.setdefault(r[0], []).append(gate)
    return {name: tuple(values) for name, values in grouped.items()}


def _load_case_counts(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, CaseCounts]:
    rows = con.execute(
        "SELECT model_name, count(*), count(*) FILTER (WHERE passed), "
        "count(*) FILTER (WHERE NOT passed) FROM cases WHERE run_id = ? GROUP BY model_name "
        "ORDER BY model_name",
        [run_id],
    ).fetchall()
    return {r[0]: CaseCounts(total=r[1], passed=r[2], failed=r[3]) for r in rows}


def _load_loss_curves(
    con: duckdb.DuckDBPyConnection, run_id: str
) -> dict[str, tuple[tuple[int, float], ...]]:
    rows = con.execute(
        "SELECT model_name, list(step ORDER BY step), list(loss ORDER BY step) FROM loss_curves "
        "WHERE run_id = ? GROUP BY model_name ORDER BY model_name",
        [run_id],
    ).fetchall()
    return {r[0]: tuple(zip(r[1], r[2], strict=True)) for r in rows}


def _case(r: Sequence[Any]) -> CaseResult:
    return CaseResult(
        capability=r[0],
        check=r[1],
        case_id=r[2],
        prompt=r[3],
        expected=r[4],
        output=r[5],
        scores=_loads(r[6]),
        passed=r[7],
        details=_loads(r[8]),
    )


def _require_run(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    if _scalar(con, "SELECT count(*) FROM runs WHERE id = ?", [run_id]) == 0:
        raise HarnessError(f"no run {run_id!r} in the results store")
