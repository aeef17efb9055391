"""Lance writes in two steps: data fragments first, then one atomic commit.

Until the commit nothing is visible, so a writer killed mid-write leaves the previous version
intact; the data files it wrote stay on disk, unreferenced by any version. A write refused by
validation removes the files it wrote. Appends that race are rebased by Lance's commit (appends
do not conflict); overwrites each become a version of their own.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pickle
import time
from typing import TYPE_CHECKING

import lance
import lance.commit
import lance.fragment
import pyarrow as pa
import pyarrow.fs

from datasets_registry.errors import RegistryError
from datasets_registry.validation import validate_rows

if TYPE_CHECKING:
    import ray.data

COMMIT_ATTEMPTS = 5  # tries of an append commit that conflicts with an overwrite

# Ray CPUs for a fragment-writing task: I/O bound, and must not starve model actors.
WRITE_TASK_CPUS = 0.25

# The version `restore` takes to mean "no rows at all" (Lance versions start at 1).
NO_ROWS = 0


def exists(uri: str) -> bool:
    """Whether a Lance dataset exists at `uri`."""
    try:
        lance.dataset(uri)
    except (FileNotFoundError, ValueError):
        return False
    return True


def _normal_type(arrow_type: pa.DataType) -> pa.DataType:
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        value = _normal_type(arrow_type.value_type)
        return pa.list_(value) if pa.types.is_list(arrow_type) else pa.large_list(value)
    if pa.types.is_struct(arrow_type):
        return pa.struct([f.with_type(_normal_type(f.type)) for f in arrow_type])
    return arrow_type


def normal_schema(schema: pa.Schema) -> pa.Schema:
    """`schema` with every list's child field named `item`.

    Parquet readers name it `element` and JSON readers `item`; without this the same data
    imported both ways could not be appended together.
    """
    return pa.schema([f.with_type(_normal_type(f.type)) for f in schema], metadata=schema.metadata)


def ray_schema(data: ray.data.Dataset, dataset: str) -> pa.Schema:
    """The normalised Arrow schema of a Ray Dataset."""
    schema = data.schema()
    if schema is None:
        raise RegistryError(f"cannot write {dataset!r}: the Ray dataset has no schema (no blocks)")
    return normal_schema(schema.base_schema)


def write_table_fragments(table: pa.Table, uri: str, mode: str) -> list[lance.FragmentMetadata]:
    """Write `table` as uncommitted fragments of the dataset at `uri`."""
    if table.num_rows == 0:
        return []
    return lance.fragment.write_fragments(table, uri, schema=table.schema, mode=mode)


def write_ray_fragments(
    data: ray.data.Dataset, uri: str, kind: str, dataset: str, mode: str
) -> tuple[pa.Schema, list[lance.FragmentMetadata]]:
    """Validate and write each block of `data` as fragments, in parallel Ray tasks.

    A block that does not fit `kind` writes nothing and reports its error, so a bad row fails
    the whole write before any commit.
    """
    schema = ray_schema(data, dataset)

    def write_block(table: pa.Table) -> pa.Table:
        try:
            validate_rows(kind, table, dataset=dataset)
        except RegistryError as err:
            return pa.table({"fragments": [None], "error": [str(err)]})
        fragments = write_table_fragments(table.cast(schema), uri, mode)
        return pa.table({"fragments": [pickle.dumps(fragments)], "error": pa.nulls(1, pa.string())})

    results = data.map_batches(
        write_block, batch_format="pyarrow", batch_size=None, num_cpus=WRITE_TASK_CPUS
    ).take_all()
    fragments = [f for row in results if row["fragments"] is not None for f in pickle.loads(row["fragments"])]
    errors = [row["error"] for row in results if row["error"] is not None]
    if errors:
        # The blocks that passed wrote fragments no version will reference: remove their files.
        delete_fragment_files(uri, fragments)
        raise RegistryError(errors[0].replace("row ", "row (in its block) ", 1))
    return schema, fragments


def delete_fragment_files(uri: str, fragments: list[lance.FragmentMetadata]) -> None:
    """Delete the data files of uncommitted fragments (they live under `<uri>/data/`)."""
    filesystem, root = pyarrow.fs.FileSystem.from_uri(uri)
    for fragment in fragments:
        for data_file in fragment.files:
            try:
                filesystem.delete_file(f"{root.rstrip('/')}/data/{data_file.path}")
            except FileNotFoundError:
                pass


def restore(uri: str, version: int, schema: pa.Schema) -> None:
    """Make `version` the latest again, as a new version (`NO_ROWS`: a new version with none)."""
    if version == NO_ROWS:
        lance.LanceDataset.commit(uri, lance.LanceOperation.Overwrite(schema, []))
    else:
        lance.dataset(uri, version=version).restore()


def commit(uri: str, schema: pa.Schema, fragments: list[lance.FragmentMetadata], mode: str) -> int:
    """Commit fragments as a new version: `overwrite` replaces all rows, `append` adds to them.

    Returns:
        The Lance version this commit created.
    """
    if mode == "overwrite":
        return lance.LanceDataset.commit(uri, lance.LanceOperation.Overwrite(schema, fragments)).version
    if not exists(uri):
        create_empty(uri, schema)
    operation = lance.LanceOperation.Append(fragments)
    for attempt in range(COMMIT_ATTEMPTS):
        current = lance.dataset(uri)
        try:
            return lance.LanceDataset.commit(uri, operation, read_version=current.version).version
        except lance.commit.CommitConflictError:
            # Lance rebases appends over appends itself; an overwrite that landed meanwhile (an
            # empty creation on an object store, or another writer's overwrite) needs a re-read.
            if attempt == COMMIT_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def create_empty(uri: str, schema: pa.Schema, *, data_storage_version: str | None = None) -> None:
    """Create the dataset with an empty first version, so every later commit is an append and
    racing appenders to a new name cannot overwrite each other's rows.

    Lance's `create` checks for an existing dataset before it commits, so two creators can both
    succeed, the second one landing after the first's appends. On a local disk an exclusive file
    lock makes the check and the creation one step; on object stores the race remains.
    `data_storage_version` picks Lance's file format (None: Lance's default).
    """
    if "://" in uri:
        with contextlib.suppress(OSError):
            lance.write_dataset(
                schema.empty_table(), uri, mode="create", data_storage_version=data_storage_version
            )
        return
    os.makedirs(os.path.dirname(uri) or ".", exist_ok=True)
    with open(f"{uri}.create-lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not exists(uri):
            lance.write_dataset(
                schema.empty_table(), uri, mode="create", data_storage_version=data_storage_version
            )
