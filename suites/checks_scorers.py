"""Scoring functions for suites/checks.yaml's `python` check (the suite sets allow_python)."""

from __future__ import annotations

from typing import Any


def digits_match(output: str, row: dict[str, Any]) -> dict[str, float]:
    """1 when the answer's digits equal the expected number; and how long the answer is."""
    digits = "".join(ch for ch in output if ch.isdigit())
    return {"match": float(digits == str(row["expected"])), "length": float(len(output.strip()))}
