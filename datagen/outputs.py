"""Turn a job's finished rows into registry datasets: one projection per output kind, and the
dead-letter rows."""

import functools
import json

import pyarrow as pa
import pyarrow.compute as pc

from datagen.stages.base import ERROR_COLUMN, ERROR_COLUMNS, ERROR_STAGE_COLUMN
from datasets_registry import canonical_hash
from datasets_registry.kinds import COMMON_COLUMNS, REQUIRED_COLUMNS

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
    data); the id of the row it came from is kept as `source_id`.
    """
    required = list(REQUIRED_COLUMNS[kind])
    if not required:  # generic and prompts keep every column but the error bookkeeping
        return table.drop_columns([c for c in ERROR_COLUMNS if c in table.column_names])
    mask = functools.reduce(pc.and_kleene, [pc.is_valid(table[c]) for c in required])
    kept = table.filter(mask)
    common = [c for c in COMMON_COLUMNS if c in kept.column_names and c != "id"]
    out = kept.select(required + common)
    ids = [canonical_hash(row)[:16] for row in kept.select(required).to_pylist()]
    out = out.append_column("id", pa.array(ids, type=pa.string()))
    if "id" in kept.column_names:
        out = out.append_column("source_id", kept["id"].cast(pa.string()))
    return out


def dead_letter_rows(table: pa.Table, job_id: str) -> pa.Table:
    """Failed rows as dead letters: id, job, stage, error and the row as JSON."""
    failed = failed_rows(table)
    payload = failed.drop_columns(list(ERROR_COLUMNS))
    rows = [json.dumps(row, ensure_ascii=False, default=str) for row in payload.to_pylist()]
    ids = failed["id"].cast(pa.string()) if "id" in failed.column_names else pa.nulls(len(rows), pa.string())
    return pa.table(
        {
            "id": ids,
            "job_id": pa.array([job_id] * len(rows), type=pa.string()),
            "stage": failed[ERROR_STAGE_COLUMN],
            "error": failed[ERROR_COLUMN],
            "row": pa.array(rows, type=pa.string()),
        },
        schema=DEAD_LETTER_SCHEMA,
    )
