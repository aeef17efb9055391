"""Stages map a Ray Dataset to a Ray Dataset, declaring the columns they read and write.

Every row carries two error columns. A row whose processing raises gets the stage name and the
error in them; later stages pass it through untouched, and the job sends it to the dead-letter
dataset. So one bad row never kills a job.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

if TYPE_CHECKING:
    import ray.data

ERROR_COLUMN = "_error"
ERROR_STAGE_COLUMN = "_error_stage"
ERROR_COLUMNS = {ERROR_COLUMN: pa.string(), ERROR_STAGE_COLUMN: pa.string()}

# Ray CPUs for cheap per-row work: whole-CPU tasks beside model actors stall a 2-core machine.
LIGHT_TASK_CPUS = 0.1

Row = dict[str, Any]
RowResult = Row | Exception


class Stage(ABC):
    """A pipeline step over a Ray Dataset.

    Subclasses set `reads` (input columns) and `writes` (output columns and their Arrow types),
    which the job checks against the source columns before anything runs.
    """

    reads: tuple[str, ...] = ()
    writes: dict[str, pa.DataType] = {}

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def models(self) -> list[str]:
        """Identities of the models this stage runs (for lineage)."""
        return []

    @abstractmethod
    def apply(self, ds: ray.data.Dataset) -> ray.data.Dataset:
        """Add this stage to the dataset's plan."""


def run_rows_isolated(rows: Sequence[Row], process: Callable[[Row], Row]) -> list[RowResult]:
    """Apply `process` to each row, capturing an exception as that row's result."""
    results: list[RowResult] = []
    for row in rows:
        try:
            results.append(process(row))
        except Exception as err:  # noqa: BLE001 - any row failure becomes a dead letter
            results.append(err)
    return results


def process_table(
    table: pa.Table,
    stage_name: str,
    reads: Sequence[str],
    writes: dict[str, pa.DataType],
    process_rows: Callable[[list[Row]], list[RowResult]],
) -> pa.Table:
    """Run `process_rows` on the rows of `table` that have no error yet and add its columns.

    Input columns keep their Arrow types; written columns get the declared types, so every
    block of a dataset has the same schema. A result that is an exception marks its row failed.
    """
    errors = table[ERROR_COLUMN].to_pylist()
    error_stages = table[ERROR_STAGE_COLUMN].to_pylist()
    pending = [i for i, error in enumerate(errors) if error is None]
    rows = table.select(list(reads)).take(pending).to_pylist() if pending else []
    results = process_rows(rows) if rows else []
    columns: dict[str, list[Any]] = {name: [None] * table.num_rows for name in writes}
    for index, result in zip(pending, results, strict=True):
        if isinstance(result, Exception):
            errors[index] = f"{type(result).__name__}: {result}"
            error_stages[index] = stage_name
            continue
        for name in writes:
            columns[name][index] = result[name]
    out = table
    for name, arrow_type in writes.items():
        out = set_column(out, name, pa.array(columns[name], type=arrow_type))
    out = set_column(out, ERROR_COLUMN, pa.array(errors, type=pa.string()))
    return set_column(out, ERROR_STAGE_COLUMN, pa.array(error_stages, type=pa.string()))


def set_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    """Replace column `name`, or append it if absent."""
    index = table.schema.get_field_index(name)
    if index >= 0:
        return table.set_column(index, name, values)
    return table.append_column(name, values)


class RowStage(Stage):
    """A stage that maps each row independently in cheap Ray tasks."""

    @abstractmethod
    def process_row(self, row: Row) -> Row:
        """Return the values of `writes` for one row; raise to fail the row."""

    def apply(self, ds: ray.data.Dataset) -> ray.data.Dataset:
        name, reads, writes, process = self.name, self.reads, self.writes, self.process_row

        def run(table: pa.Table) -> pa.Table:
            return process_table(table, name, reads, writes, lambda rows: run_rows_isolated(rows, process))

        return ds.map_batches(
            run, batch_format="pyarrow", num_cpus=LIGHT_TASK_CPUS, udf_modifying_row_count=False
        )
