"""Retry a job's dead letters: run only its failed rows again, from the earliest stage one of
them failed in, and append the rows that now finish to the job's outputs as new versions.

The failed rows come back as they were when they failed (the dead letter's `row` JSON, which
holds the source columns and what earlier stages wrote). Stages keep their names; generate
stages take every completion made before from the LLM-call cache. The new versions' lineage
names the dead-letter version the rows came from and the versions the first job registered.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from assay.errors import AssayError
from datagen.spec import LoadedSpec, SourceSpec
from datasets_registry import Registry

OUTPUT_STAGE_PREFIX = "output:"


def retry_spec(
    loaded: LoadedSpec, registry: Registry, parent_id: str, folder: Path
) -> tuple[LoadedSpec, list[str]]:
    """The spec that re-runs `parent_id`'s dead letters, and the lineage sources to add.

    Args:
        loaded: The parent job's spec.
        registry: Where the parent registered its dead letters.
        parent_id: The job whose dead letters to retry.
        folder: Where to write the failed rows as the retry's JSONL source.

    Raises:
        AssayError: the job left no dead letters.
    """
    spec = loaded.spec
    dead_name = spec.dead_letter_dataset
    try:
        dead = registry.open(dead_name)
    except AssayError as err:
        raise AssayError(f"job {parent_id} left no dead letters ({err})") from err
    table = dead.to_arrow(filter=f"job_id = '{parent_id}'")
    if table.num_rows == 0:
        raise AssayError(f"job {parent_id} left no dead letters in {dead.ref}")
    names = [stage.name or f"{index}-{stage.type}" for index, stage in enumerate(spec.stages)]
    failed_at = set(table["stage"].to_pylist())
    starts = [names.index(name) for name in failed_at if name in names]
    start = min(starts) if starts else len(names)  # only `output:` failures: no stage to re-run
    folder.mkdir(parents=True, exist_ok=True)
    rows = folder / "failed-rows.parquet"
    parent_versions = [info for info in registry.catalog.rows() if info.job_id == parent_id]
    known = [registry.open(f"{info.name}@{info.version}").schema for info in parent_versions]
    _write_rows([json.loads(row) for row in table["row"].to_pylist()], known, rows)
    stages = [
        stage.model_copy(update={"name": name}) for stage, name in zip(spec.stages, names, strict=True)
    ][start:]
    outputs = [output.model_copy(update={"mode": "append"}) for output in spec.outputs]
    retried = spec.model_copy(
        update={"source": SourceSpec(path=str(rows)), "stages": stages, "outputs": outputs}
    )
    raw = retried.model_dump(mode="json", exclude_none=True)
    parents = sorted({f"{info.name}@{info.version}" for info in parent_versions})
    print(f"retrying {table.num_rows} dead letters of {parent_id} from {dead.ref}, "
          f"from stage {names[start] if start < len(names) else 'outputs'}", flush=True)  # fmt: skip
    return LoadedSpec(spec=retried, path=loaded.path, raw=raw), [
        dead.ref,
        *(ref for ref in parents if ref != dead.ref),
    ]


def _write_rows(rows: list[dict], schemas: list[pa.Schema], path: Path) -> None:
    """Write the failed rows as Parquet, each column typed as the parent's outputs have it: a
    column that is null in every failed row would otherwise be typed `null`, and the recovered
    rows could not be appended to the versions the parent registered."""
    table = pa.Table.from_pylist(rows)
    types = {field.name: field.type for schema in schemas for field in schema}
    fields = [
        pa.field(f.name, types.get(f.name, f.type)) if pa.types.is_null(f.type) else f for f in table.schema
    ]
    pq.write_table(table.cast(pa.schema(fields)), path)
