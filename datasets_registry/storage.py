"""Lance writes in two steps: data fragments first, then one atomic commit.

Until the commit nothing is visible, so a writer killed mid-write leaves the previous version
intact; the data files it wrote stay on disk (or in the bucket), unreferenced by any version.
A write refused by validation removes the files it wrote. Appends that race are rebased by
Lance's commit (appends do not conflict); overwrites each become a version of their own.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pickle
import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import lance
import lance.commit
import lance.fragment
import pyarrow as pa
import pyarrow.compute as pc
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


def _not_found(err: Exception) -> bool:
    """Whether a Lance open failed because no dataset is there (not because the store failed)."""
    return isinstance(err, FileNotFoundError) or "was not found" in str(err)


def open_dataset(uri: str) -> lance.LanceDataset | None:
    """The Lance dataset at `uri` at its latest version, or None where there is none.

    Raises:
        RegistryError: the store could not be read (on an object store: a missing bucket, a
            refused request), so whether a dataset is there is unknown. Taking that for "no
            dataset" would show an empty registry, or start a second history of a dataset.
    """
    try:
        return lance.dataset(uri)
    except (FileNotFoundError, ValueError, OSError) as err:
        if _not_found(err):
            return None
        reason = re.sub(r",?\s*/\S+\.rs:\d+:\d+", "", str(err))  # Lance's Rust source locations
        raise RegistryError(f"cannot read {uri}: {reason}") from err


def exists(uri: str) -> bool:
    """Whether a Lance dataset exists at `uri` (see `open_dataset` for the errors)."""
    return open_dataset(uri) is not None


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


def _has_null_type(arrow_type: pa.DataType) -> bool:
    if pa.types.is_null(arrow_type):
        return True
    return any(_has_null_type(arrow_type.field(i).type) for i in range(arrow_type.num_fields))


def _same_type(a: pa.DataType, b: pa.DataType) -> bool:
    """`a == b`, telling list items apart by name too (Arrow's `==` does not)."""
    return a == b and all(
        a.field(i) == b.field(i) and _same_type(a.field(i).type, b.field(i).type) for i in range(a.num_fields)
    )


def _cast_array(array: pa.Array, to: pa.DataType) -> pa.Array:
    if _same_type(array.type, to):
        return array
    if not _has_null_type(to):
        return array.cast(to)
    mask = array.is_null() if array.null_count else None
    for is_kind, array_class in (
        (pa.types.is_list, pa.ListArray),
        (pa.types.is_large_list, pa.LargeListArray),
    ):
        if is_kind(array.type) and is_kind(to):
            # A sliced list's offsets index into its whole `values` (and a mask needs them to
            # start at 0): take its own values and offsets from 0.
            start, end = array.offsets[0].as_py(), array.offsets[-1].as_py()
            offsets = pc.subtract(array.offsets, pa.scalar(start, array.offsets.type))
            values = _cast_array(array.values.slice(start, end - start), to.value_type)
            return array_class.from_arrays(offsets, values, type=to, mask=mask)
    if pa.types.is_struct(array.type) and pa.types.is_struct(to):
        if [f.name for f in array.type] == [f.name for f in to]:
            children = [_cast_array(child, f.type) for child, f in zip(array.flatten(), to, strict=True)]
            return pa.StructArray.from_arrays(children, fields=list(to), mask=mask)
    return array.cast(to)


def cast_table(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` cast to `schema` (the same columns, in the same order).

    Not `Table.cast`: pyarrow (26) casts a list or struct to its own type, or to one that
    differs only in field names (as `normal_schema` renames), without copying, and gives a
    null-typed child its parent's length instead of its own. In a list, or a sliced struct (Ray
    blocks are slices), the result fails validation: "Struct child array #N has length smaller
    than expected". A key that is null in every row becomes such a child, as in IFEval's
    list<struct> `kwargs` after a JSON round trip (which writes every key of every row). So a
    column already of its type is kept, and lists and structs around a null-typed child are
    rebuilt from their cast children.
    """
    if table.schema.names != schema.names:
        raise ValueError(f"cannot cast columns {table.schema.names} to {schema.names}")
    columns = [
        column
        if _same_type(column.type, field.type)
        else pa.chunked_array([_cast_array(chunk, field.type) for chunk in column.chunks], field.type)
        for column, field in zip(table.columns, schema, strict=True)
    ]
    return pa.Table.from_arrays(columns, schema=schema)


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
        fragments = write_table_fragments(cast_table(table, schema), uri, mode)
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


class _NotTheFirstVersion(Exception):
    """Raised by `_first_version_only` to refuse a creation that would not be version 1."""


@contextlib.contextmanager
def _first_version_only(version: int) -> Iterator[None]:
    """A Lance commit lock that lets only a commit of version 1 through.

    Lance asks it for the version it is about to commit (each retry included), so a creation
    that would land on top of an existing dataset fails instead.
    """
    if version != 1:
        raise _NotTheFirstVersion(f"version {version} is not the first version")
    yield


def create_empty(uri: str, schema: pa.Schema, *, data_storage_version: str | None = None) -> None:
    """Create the dataset with an empty first version, so every later commit is an append and
    racing appenders to a new name cannot overwrite each other's rows.

    Lance's `create` checks that no dataset is there, then loads the latest version again to
    commit, and a creation is an overwrite: when another writer created the dataset and
    appended to it in between, the creation lands on top as a new empty version and hides
    those rows. On a local disk an exclusive file lock makes the check and the creation one
    step. An object store has no such lock, so there the creation is committed through
    `_first_version_only`, which refuses any version but 1; the loser then finds the dataset
    there. (A commit lock makes Lance write version 1 with a plain put: two creators that both
    get past its check that version 1 is free, within milliseconds, both write it, and the last
    one stays. With the same schema, which the catalog's, the job records' and the cache's
    fixed schemas guarantee, nothing is lost: later versions do not depend on which one stays.
    Two writers creating one dataset name with different schemas at that instant are not
    supported.) `data_storage_version` picks Lance's file format (None: Lance's default).
    """
    if "://" in uri:
        try:
            lance.write_dataset(
                schema.empty_table(),
                uri,
                mode="create",
                data_storage_version=data_storage_version,
                commit_lock=_first_version_only,
            )
        except OSError:
            if not exists(uri):  # neither "already exists" nor a lost race: the store refused
                raise
        return
    os.makedirs(os.path.dirname(uri) or ".", exist_ok=True)
    with open(f"{uri}.create-lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not exists(uri):
            lance.write_dataset(
                schema.empty_table(), uri, mode="create", data_storage_version=data_storage_version
            )
