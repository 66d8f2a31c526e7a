"""`json`: the output is JSON and, when a schema is given, valid under it."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
from pydantic import Field, field_validator

from harness.checks import Case, CheckSpec, Outcome, generative_check


class JsonParams(CheckSpec):
    json_schema: dict[str, Any] | None = Field(None, alias="schema")
    extract: bool = False  # take the first {...} or [...] in the output, ignoring text around it

    @field_validator("json_schema")
    @classmethod
    def _valid_schema(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        if schema is not None:
            try:
                jsonschema.validators.validator_for(schema).check_schema(schema)
            except jsonschema.SchemaError as exc:
                raise ValueError(f"not a valid JSON Schema: {exc.message}") from exc
        return schema


def _extract(text: str) -> str:
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    if not starts:
        return text
    start = min(starts)
    closer = "}" if text[start] == "{" else "]"
    end = text.rfind(closer)
    return text[start : end + 1] if end > start else text[start:]


def _parse(output: str, params: JsonParams) -> tuple[Any, str | None]:
    text = _extract(output) if params.extract else output.strip()
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, f"not JSON: {exc.msg} at char {exc.pos}"


def _schema_error(value: Any, schema: dict[str, Any]) -> str | None:
    error = jsonschema.exceptions.best_match(
        jsonschema.validators.validator_for(schema)(schema).iter_errors(value)
    )
    return None if error is None else f"schema: {error.message}"


def score_json(output: str, case: Case, params: JsonParams) -> Outcome:
    schema = params.json_schema or case.fields.get("schema")
    value, error = _parse(output, params)
    if error is None and schema:
        error = _schema_error(value, schema)
    parsed = error is None or error.startswith("schema")
    conforms = error is None
    details = {"error": error} if error else {}
    shown = json.dumps(schema) if schema else None
    return Outcome(
        output, {"valid": float(parsed), "schema": float(conforms)}, conforms, shown, details
    )


CHECK = generative_check(
    "json", JsonParams, ("valid", "schema"), score_json, required_fields=lambda _: set()
)
