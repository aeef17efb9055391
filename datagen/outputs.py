"""Turn a job's finished rows into registry datasets: one projection per output kind, checked
row by row against the kind, and the dead-letter rows."""

import functools

import pyarrow as pa
import pyarrow.compute as pc

from datagen.stages.base import (
    ERROR_COLUMN,
    ERROR_COLUMNS,
    ERROR_STAGE_COLUMN,
    FAILED_ROW_COLUMN,
    mark_failed,
)
from datasets_registry import RegistryError, content_id
from datasets_registry.kinds import COMMON_COLUMNS, REQUIRED_COLUMNS
from datasets_registry.validation import validate_rows

DEAD_LETTER_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("job_id", pa.string()),
        ("stage", pa.string()),
        ("error", pa.string()),
        ("row", pa.string()),  # the failed row's columns as JSON, for inspection and retry
    ]
)


def failed_rows(table: pa.Table) -> pa.Table:
    """Rows that some stage failed."""
    return table.filter(pc.is_valid(table[ERROR_COLUMN]))


def finished_rows(table: pa.Table) -> pa.Table:
    """Rows that every stage processed."""
    return table.filter(pc.is_null(table[ERROR_COLUMN]))


def project_for_kind(table: pa.Table, kind: str) -> pa.Table:
    """The rows of `table` that have every column `kind` requires, in the kind's columns.

    `id` becomes a hash of the required columns' content (stable across runs for the same
    data); the id of the row it came from is kept as `source_id`. Kinds without required
    columns (`generic`) keep every column but the error bookkeeping.
    """
    required = list(REQUIRED_COLUMNS[kind])
    if not required:
        return table.drop_columns([c for c in ERROR_COLUMNS if c in table.column_names])
    kept = _rows_with(table, required)
    common = [c for c in COMMON_COLUMNS if c in kept.column_names and c != "id" and c not in required]
    out = kept.select(required + common)
    ids = [content_id(row) for row in kept.select(required).to_pylist()]
    out = out.append_column("id", pa.array(ids, type=pa.string()))
    if "id" in kept.column_names:
        out = out.append_column("source_id", kept["id"].cast(pa.string()))
    return out


def _rows_with(table: pa.Table, required: list[str]) -> pa.Table:
    """The rows of `table` where every one of `required` is set."""
    return table.filter(functools.reduce(pc.and_kleene, [pc.is_valid(table[c]) for c in required]))


def check_output_rows(table: pa.Table, kind: str, output: str) -> pa.Table:
    """Mark rows of `table` that the `kind` would refuse as failed at stage `output:NAME`.

    Only the rows and columns the output will take are checked (the projection itself, with its
    content ids, is computed once, when the output is written). The whole block is checked at
    once; only when it fails is each row checked alone, so one bad row goes to the dead letters
    instead of refusing the job's whole output.
    """
    required = list(REQUIRED_COLUMNS[kind])
    if not required:
        return table
    columns = required + (["id"] if "id" in table.column_names else [])

    def candidates(rows: pa.Table) -> pa.Table:
        return _rows_with(rows, required).select(columns)

    try:
        validate_rows(kind, candidates(table), dataset=output)
        return table
    except RegistryError:
        pass
    failures = {}
    for index in range(table.num_rows):
        row = candidates(table.slice(index, 1))
        try:
            validate_rows(kind, row, dataset=output)
        except RegistryError as err:
            failures[index] = f"RegistryError: {err}"
    return mark_failed(table, failures, f"output:{output}")


def dead_letter_rows(table: pa.Table, job_id: str) -> pa.Table:
    """Failed rows as dead letters: id, job, stage, error and the row as it was when it failed."""
    failed = failed_rows(table)
    ids = (
        failed["id"].cast(pa.string())
        if "id" in failed.column_names
        else pa.nulls(failed.num_rows, pa.string())
    )
    return pa.table(
        {
            "id": ids,
            "job_id": pa.array([job_id] * failed.num_rows, type=pa.string()),
            "stage": failed[ERROR_STAGE_COLUMN],
            "error": failed[ERROR_COLUMN],
            "row": failed[FAILED_ROW_COLUMN],
        },
        schema=DEAD_LETTER_SCHEMA,
    )
