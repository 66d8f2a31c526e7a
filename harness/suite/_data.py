"""Data sets for checks and training: inline rows or jsonl/json/csv/tsv/parquet files.

Every row remembers where it came from (`file:line`), so a bad row is reported at its line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMATS = ("jsonl", "json", "csv", "tsv", "parquet")


class DataError(ValueError):
    """A data file that cannot be read; the message starts with `file:line`."""


@dataclass(frozen=True)
class Row:
    fields: dict[str, Any]
    source: str  # "path:line" (or "path#row" for parquet)


def infer_format(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    if suffix == "ndjson":
        return "jsonl"
    if suffix not in FORMATS:
        raise DataError(
            f"{path}: cannot tell the format from the extension; set `format:` ({', '.join(FORMATS)})"
        )
    return suffix


def read_rows(path: Path, fmt: str | None = None, columns: list[str] | None = None) -> list[Row]:
    """Read a data file into rows; DataError names the file and line of the first problem.

    `columns`: the column names of a csv/tsv file that has no header line (GLUE's CoLA).
    """
    if not path.is_file():
        raise DataError(f"{path}: no such data file")
    fmt = fmt or infer_format(path)
    if fmt in ("csv", "tsv"):
        return _delimited(path, fmt, columns)
    if columns is not None:
        raise DataError(f"{path}: `columns` applies to csv and tsv files only")
    reader = {"jsonl": _jsonl, "json": _json, "parquet": _parquet}
    return reader[fmt](path, fmt)


def read_text(path: Path) -> str:
    """A data file's text; DataError at the line and column of a byte that is not UTF-8."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        column = len(before) - (before.rfind(b"\n") + 1) + 1
        raise DataError(
            f"{path}:{line}:{column}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); "
            "save the file as UTF-8"
        ) from None


def _object_row(value: Any, source: str) -> Row:
    if not isinstance(value, dict):
        raise DataError(
            f"{source}: a row must be an object with named fields, got {type(value).__name__}"
        )
    return Row(value, source)


def _jsonl(path: Path, _fmt: str) -> list[Row]:
    rows = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{number}:{exc.colno}: invalid JSON: {exc.msg}") from exc
        rows.append(_object_row(value, f"{path}:{number}"))
    return rows


def _json(path: Path, _fmt: str) -> list[Row]:
    try:
        value = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from exc
    if not isinstance(value, list):
        raise DataError(f"{path}: a .json data file must hold a list of objects")
    return [_object_row(item, f"{path}#{i + 1}") for i, item in enumerate(value)]


def _delimited(path: Path, fmt: str, columns: list[str] | None = None) -> list[Row]:
    import csv

    import pandas as pd  # only suites with csv/tsv data pay for the import

    # TSV has no quoting: a field may start with a quote (GLUE's files do), as the GLUE loaders
    # and `datasets` read them.
    quoting = csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL
    try:
        frame = pd.read_csv(
            path,
            sep="\t" if fmt == "tsv" else ",",
            dtype=str,
            keep_default_na=False,
            quoting=quoting,
            header=None if columns else "infer",
            names=columns,
        )
    except UnicodeDecodeError:
        read_text(path)  # names the line and column of the first byte that is not UTF-8
        raise
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: cannot parse as {fmt}: {exc}") from exc
    # Line numbers count the header line, so the first data row is line 2 (1 without a header).
    first = 1 if columns else 2
    return [
        Row(dict(record), f"{path}:{i + first}")
        for i, record in enumerate(frame.to_dict("records"))
    ]


def _parquet(path: Path, _fmt: str) -> list[Row]:
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises its own types (ArrowInvalid, ArrowIOError, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: not a readable Parquet file ({first})") from None
    records = json.loads(frame.to_json(orient="records"))  # plain Python values, not numpy scalars
    return [Row(record, f"{path}#{i + 1}") for i, record in enumerate(records)]


def read_dataset(name: str, config: str | None, split: str) -> list[Row]:
    """Rows of a `datasets` split: a hub name when the hub is reachable, or a local directory.

    No machine of this project reaches a hub, so the hub path fails here with a message that says
    how to go on (export the split to a file); a local dataset directory loads offline.
    """
    import datasets

    where = f"{name}{'/' + config if config else ''}[{split}]"
    try:
        loaded = datasets.load_dataset(name, config, split=split)
    except Exception as exc:  # datasets raises many types: connection, missing split, bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"dataset {where} could not be loaded ({type(exc).__name__}: {first}); if the hub is "
            "unreachable, export the split to jsonl/csv/parquet and give it as `path:`"
        ) from exc
    return [Row(dict(record), f"{where}#{i + 1}") for i, record in enumerate(loaded)]
