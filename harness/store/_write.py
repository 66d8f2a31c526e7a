"""Writing results: models, cases, metrics, gates and loss curves as column batches, with secrets redacted from every JSON value."""

from __future__ import annotations

import platform
import re
from collections.abc import Sequence
from typing import Any

import duckdb

from harness import __version__ as HARNESS_VERSION
from harness.core.records import CaseResult, GateResult, MetricValue, ModelRecord
from harness.core.versions import installed_versions
from harness.store._values import _dumps, _now, _scalar

_LIBRARIES = (
    "torch",
    "transformers",
    "tokenizers",
    "peft",
    "trl",
    "accelerate",
    "datasets",
    "bitsandbytes",
    "lm_eval",
    "evaluate",
    "duckdb",
    "numpy",
)


def library_versions() -> dict[str, str]:
    """What a run records: Python, harness, and each installed library a result depends on."""
    versions = {"python": platform.python_version(), "harness": HARNESS_VERSION}
    return versions | {k: v for k, v in installed_versions(_LIBRARIES).items() if v is not None}


_REDACTED = "***"


# Words that mark a secret. "token" alone is too broad for ML configs (max_new_tokens, pad_token,
# pad_token_id), so it counts only as a whole word not preceded by a special-token name.
_SECRET_WORDS = {
    "password",
    "passwd",
    "secret",
    "secrets",
    "authorization",
    "apikey",
    "credential",
    "credentials",
}


_SPECIAL_TOKENS = {"pad", "eos", "bos", "unk", "sep", "cls", "mask", "special", "additional"}


def _is_secret_key(key: str) -> bool:
    words = [w.lower() for w in re.findall(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])", key)]
    if _SECRET_WORDS.intersection(words):
        return True
    for i, word in enumerate(words):
        nxt = words[i + 1] if i + 1 < len(words) else ""
        if word == "api" and nxt == "key":
            return True
        if (
            word == "token"
            and nxt not in ("id", "ids")
            and (i == 0 or words[i - 1] not in _SPECIAL_TOKENS)
        ):
            return True
    return False


def redact_secrets(value: Any) -> Any:
    """A copy of `value` with every non-empty value under a secret-looking key replaced by "***"."""
    if isinstance(value, dict):
        return {
            k: _REDACTED if _is_secret_key(str(k)) and v not in (None, "") else redact_secrets(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_secrets(v) for v in value]
    return value


def _delete_for_model(
    con: duckdb.DuckDBPyConnection, tables: Sequence[str], run_id: str, model_name: str
) -> None:
    for table in tables:
        sql = f"DELETE FROM {table} WHERE run_id = ? AND model_name = ?"
        con.execute(sql, [run_id, model_name])


def _insert_cases(
    con: duckdb.DuckDBPyConnection, run_id: str, model_name: str, cases: list[CaseResult]
) -> None:
    _insert_columns(
        con,
        "cases",
        {"run_id": run_id, "model_name": model_name},
        [
            ("seq", "INTEGER", list(range(len(cases)))),
            ("capability", "VARCHAR", [c.capability for c in cases]),
            ("check_name", "VARCHAR", [c.check for c in cases]),
            ("case_id", "VARCHAR", [c.case_id for c in cases]),
            ("prompt", "VARCHAR", [c.prompt for c in cases]),
            ("expected", "VARCHAR", [c.expected for c in cases]),
            ("output", "VARCHAR", [c.output for c in cases]),
            ("scores", "VARCHAR", [_dumps(c.scores) for c in cases]),
            ("passed", "BOOLEAN", [c.passed for c in cases]),
            ("details", "VARCHAR", [_dumps(c.details) for c in cases]),
        ],
    )


def _insert_metrics(
    con: duckdb.DuckDBPyConnection, run_id: str, model_name: str, metrics: list[MetricValue]
) -> None:
    _insert_columns(
        con,
        "metrics",
        {"run_id": run_id, "model_name": model_name},
        [
            ("seq", "INTEGER", list(range(len(metrics)))),
            ("capability", "VARCHAR", [m.capability for m in metrics]),
            ("metric", "VARCHAR", [m.metric for m in metrics]),
            ("value", "DOUBLE", [m.value for m in metrics]),
            ("ci_low", "DOUBLE", [m.ci_low for m in metrics]),
            ("ci_high", "DOUBLE", [m.ci_high for m in metrics]),
            ("n", "INTEGER", [m.n for m in metrics]),
            ("lower_is_better", "BOOLEAN", [m.lower_is_better for m in metrics]),
        ],
    )


def _insert_columns(
    con: duckdb.DuckDBPyConnection,
    table: str,
    constants: dict[str, Any],
    columns: list[tuple[str, str, list[Any]]],
) -> None:
    """Insert many rows at once: constant columns, then one list parameter per (name, type, values).

    Zipping unnested lists in one SELECT is ~20x faster than executemany (10k cases in ~0.3 s) and
    needs no pandas/pyarrow import.
    """
    if not columns or not columns[0][2]:
        return
    names = [*constants, *(name for name, _, _ in columns)]
    selects = ["?"] * len(constants) + [f"unnest(?::{sql_type}[])" for _, sql_type, _ in columns]
    params = [*constants.values(), *(values for _, _, values in columns)]
    con.execute(
        f"INSERT INTO {table} ({', '.join(names)}) SELECT {', '.join(selects)}",
        params,
    )


def _write_model(con: duckdb.DuckDBPyConnection, run_id: str, model: ModelRecord) -> None:
    row = con.execute(
        "SELECT seq FROM models WHERE run_id = ? AND name = ?", [run_id, model.name]
    ).fetchone()
    if row is None:
        seq = _scalar(con, "SELECT count(*) FROM models WHERE run_id = ?", [run_id])
    else:
        seq = row[0]
        con.execute("DELETE FROM models WHERE run_id = ? AND name = ?", [run_id, model.name])
    con.execute(
        "INSERT INTO models (run_id, name, seq, role, reference, fingerprint, status, error, "
        "info, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            run_id,
            model.name,
            seq,
            model.role,
            model.reference,
            model.fingerprint,
            model.status,
            model.error,
            _dumps(model.info),
            _now(),
        ],
    )


def _write_evaluation(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    model_name: str,
    cases: list[CaseResult],
    metrics: list[MetricValue],
) -> None:
    _delete_for_model(con, ("cases", "metrics"), run_id, model_name)
    _insert_cases(con, run_id, model_name, cases)
    _insert_metrics(con, run_id, model_name, metrics)


def _write_gates(
    con: duckdb.DuckDBPyConnection, run_id: str, model_name: str, gates: list[GateResult]
) -> None:
    _delete_for_model(con, ("gates",), run_id, model_name)
    _insert_columns(
        con,
        "gates",
        {"run_id": run_id, "model_name": model_name},
        [
            ("seq", "INTEGER", list(range(len(gates)))),
            ("capability", "VARCHAR", [g.capability for g in gates]),
            ("kind", "VARCHAR", [g.kind for g in gates]),
            ("metric", "VARCHAR", [g.metric for g in gates]),
            ("value", "DOUBLE", [g.value for g in gates]),
            ("base_value", "DOUBLE", [g.base_value for g in gates]),
            ("delta", "DOUBLE", [g.delta for g in gates]),
            ("limit_value", "DOUBLE", [g.limit for g in gates]),
            ("passed", "BOOLEAN", [g.passed for g in gates]),
            ("outcome", "VARCHAR", [g.outcome for g in gates]),
            ("message", "VARCHAR", [g.message for g in gates]),
            ("details", "VARCHAR", [_dumps(g.details) for g in gates]),
        ],
    )


def _write_loss_curve(
    con: duckdb.DuckDBPyConnection, run_id: str, model_name: str, points: list[tuple[int, float]]
) -> None:
    _delete_for_model(con, ("loss_curves",), run_id, model_name)
    _insert_columns(
        con,
        "loss_curves",
        {"run_id": run_id, "model_name": model_name},
        [
            ("step", "INTEGER", [int(s) for s, _ in points]),
            ("loss", "DOUBLE", [float(v) for _, v in points]),
        ],
    )
