"""Source rows for a pipeline: a JSONL or Parquet file, or a registered dataset version."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from assay.errors import AssayError
from datagen.stages.base import ERROR_COLUMNS, LIGHT_TASK_CPUS, set_column
from datasets_registry import DatasetVersion, Registry, RegistryError, content_id

if TYPE_CHECKING:
    import ray.data


@dataclass(frozen=True)
class Source:
    """Loaded source rows: an Arrow table (files) or a registry version (read through Ray)."""

    identity: str  # `file:PATH#sha256=HEX` or `name@version`, for lineage
    columns: list[str]
    table: pa.Table | None = None
    version: DatasetVersion | None = None
    limit: int | None = None

    def to_ray(self, block_rows: int = 32) -> ray.data.Dataset:
        """The rows as a Ray Dataset with an `id` and the error columns.

        The rows are cut into blocks of `block_rows`, so several model replicas each get work,
        with `block_rows` equal to the generate batch size no batch is left half full, and a
        block's rows finish (Ray Data sees progress) after one batch rather than after the
        whole source: a registered version is often one fragment, one block of every row.
        """
        import ray.data

        if self.table is not None:
            table = prepare_rows(self.table)
            blocks = [table.slice(i, block_rows) for i in range(0, table.num_rows, block_rows)]
            return ray.data.from_arrow(blocks)
        assert self.version is not None
        ds = self.version.to_ray()
        if self.limit is not None:
            ds = ds.limit(self.limit)
        ds = ds.repartition(target_num_rows_per_block=block_rows)
        return ds.map_batches(prepare_rows, batch_format="pyarrow", num_cpus=LIGHT_TASK_CPUS)


def prepare_rows(table: pa.Table) -> pa.Table:
    """Add a content-derived `id` where missing, and empty error columns."""
    if "id" not in table.column_names:
        ids = [content_id(row) for row in table.to_pylist()]
        table = table.append_column("id", pa.array(ids, type=pa.string()))
    for name, arrow_type in ERROR_COLUMNS.items():
        table = set_column(table, name, pa.nulls(table.num_rows, type=arrow_type))
    return table


def read_jsonl(path: Path) -> pa.Table:
    """Read a JSONL file of objects (columns: the union of all keys); a bad line is an error
    naming the file and line."""
    rows = []
    with path.open("rb") as lines:  # decode line by line, so an error names its line
        for number, raw in enumerate(lines, start=1):
            try:
                line = raw.decode("utf-8")
                if not line.strip():
                    continue
                row = json.loads(line)
            except UnicodeDecodeError as err:
                raise AssayError(f"{path}:{number}: not UTF-8: {err.reason}") from err
            except json.JSONDecodeError as err:
                raise AssayError(f"{path}:{number}: invalid JSON: {err.msg}") from err
            if not isinstance(row, dict):
                raise AssayError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
    if not rows:
        raise AssayError(f"{path}: no rows")
    try:
        return pa.Table.from_struct_array(pa.array(rows))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        raise AssayError(f"{path}: rows disagree on a column's type: {err}") from err


def load_source(path: Path | None, dataset: str | None, limit: int | None, registry: Registry) -> Source:
    """Load the source a spec names. Raises AssayError for a missing file or dataset."""
    if dataset is not None:
        try:
            version = registry.open(dataset)
        except RegistryError as err:
            raise AssayError(f"source.dataset: {err}") from err
        return Source(version.ref, version.schema.names, version=version, limit=limit)
    assert path is not None
    if not path.is_file():
        raise AssayError(f"source.path: file not found: {path}")
    if path.suffix == ".parquet":
        try:
            table = pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as err:
            raise AssayError(f"source.path: {path}: not a readable Parquet file: {err}") from err
    elif path.suffix in (".jsonl", ".json"):
        table = read_jsonl(path)
    else:
        raise AssayError(f"source.path: {path}: expected a .jsonl or .parquet file")
    if limit is not None:
        table = table.slice(0, limit)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return Source(f"file:{path}#sha256={digest}", table.column_names, table=table)
