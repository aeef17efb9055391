"""Output that people and scripts can both read.

In a terminal: rich tables and colours. Piped: tables become tab-separated lines with a header
(no wrapping, no truncation), and every listing or show command takes `--json` for one JSON
document on stdout.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from assay.cli.common import console

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document, for scripts.")]


def plain(value: Any) -> Any:
    """`value` as JSON-ready data: dataclasses and pydantic models as dicts, dates as ISO text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: plain(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if hasattr(value, "model_dump"):
        return plain(value.model_dump(mode="json"))
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(item) for item in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


def emit_json(value: Any) -> None:
    """Write `value` as one JSON document on stdout."""
    sys.stdout.write(json.dumps(plain(value), ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def emit_jsonl(rows: Sequence[dict[str, Any]]) -> None:
    """Write one JSON object per line on stdout."""
    for row in rows:
        sys.stdout.write(json.dumps(plain(row), ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def _cell(value: Any) -> str:
    return str(value).replace("\t", " ").replace("\n", " ")


def emit_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A rich table in a terminal; tab-separated lines with a header line when piped."""
    if not console.is_terminal:
        sys.stdout.write("\t".join(columns) + "\n")
        for row in rows:
            sys.stdout.write("\t".join(_cell(value) for value in row) + "\n")
        sys.stdout.flush()
        return
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(str(value) for value in row))
    console.print(table)
