"""Fragment digests stored beside the data, written when a version is committed.

A Lance data file never changes once written, so the digest of a fragment's data file
(`datasets_registry.row_digest.Digest`) is computed once, when the registry commits the version
that adds it, and stored as one Arrow IPC file under `<dataset>.lance/_assay_digests/`, a folder
Lance neither reads nor cleans up (on a local disk and on an object store alike). A reader that
has never seen a version (a freshly started viewer, `assay data diff`) then loads its fragments'
digests instead of reading their content.

A stored digest covers its data file's physical rows. A fragment that later gains a deletion
file (rows deleted) keeps its digest: the deletion vector is applied at load, from the
fragment's row addresses (no content read). Each file records the data files, the schema shape
and the row count it was made for; a file that does not match its fragment, cannot be read or
is missing is skipped, and the reader computes the digest from content as before.

A file, `<first data file's name>.arrow`, holds the digest's arrays as one record batch, rows
sorted by id hash as in a `Digest`: `id` (string view, which polars takes without a copy),
`id_hash` (uint64), `order` (int64: the rows' positions in the data file), `hash_I` (uint64:
column I's content hashes), then in the data file's row order `null_I` (bool: column I's null
flags, only where it holds nulls) and `score_J` (float64: the J-th score value), and JSON in
the schema metadata naming them. Uncompressed (hashes do not compress) and read by memory map
where local, so loading one costs little more than the pages a diff touches: about 32 bytes a
row plus the ids, 8 a column and 8 a score value (112 bytes a row for `benchmarks/ui_1m.py`'s).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable

import lance
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.fs as pafs

from datasets_registry.row_digest import ColumnDigest, Digest, as_series, digest_rows

logger = logging.getLogger(__name__)

DIGEST_DIR = "_assay_digests"
"""The folder of stored digests inside a dataset's Lance folder (Lance ignores it)."""
FORMAT = 1
"""The layout version of a stored digest; a file of another version is skipped."""
_META_KEY = b"assay_digest"
_SUFFIX = ".arrow"

_TYPES = {
    "id": pa.string_view(),
    "id_hash": pa.uint64(),
    "order": pa.int64(),
    "hash": pa.uint64(),
    "null": pa.bool_(),
    "score": pa.float64(),
}
"""The type of each stored column (by name, or by prefix for `hash_I`, `null_I`, `score_J`)."""

Nulls = dict[str, np.ndarray]
"""The null flags (bool, one per row) of the columns that hold nulls, by column name."""


def _filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem of a dataset URI (a local path or an object-store URI) and the dataset's
    folder in it."""
    filesystem, path = pafs.FileSystem.from_uri(uri)
    return filesystem, path.rstrip("/")


def _files(fragment: lance.FragmentMetadata) -> list[list[object]]:
    return [[data_file.path, list(data_file.fields)] for data_file in fragment.files]


def _shape(schema: pa.Schema) -> list[list[str]]:
    return [[field.name, str(field.type)] for field in schema]


def _stem(name: str) -> str:
    """A data file's or a digest file's name up to its first dot (data file names have none)."""
    return name.rsplit("/", 1)[-1].split(".", 1)[0]


def digest_name(fragment: lance.FragmentMetadata) -> str:
    """The file name of a fragment's stored digest: its first data file's stem, `.arrow`."""
    return _stem(fragment.files[0].path) + _SUFFIX


def to_table(digest: Digest, nulls: Nulls, fragment: lance.FragmentMetadata, schema: pa.Schema) -> pa.Table:
    """The table stored for the digest of `fragment`'s rows (all of them: no deletion file)."""
    arrays: dict[str, pa.Array] = {
        "id": digest.ids.to_arrow(compat_level=pl.CompatLevel.newest()),  # string views
        "id_hash": pa.array(digest.id_hashes, pa.uint64()),
        "order": pa.array(digest.order.astype(np.int64, copy=False), pa.int64()),
    }
    columns = []
    for index, (name, column) in enumerate(digest.columns.items()):
        arrays[f"hash_{index}"] = pa.array(column.hashes, pa.uint64())
        if name in nulls:
            arrays[f"null_{index}"] = pa.array(nulls[name], pa.bool_())
        columns.append([name, str(column.dtype), column.null_count, name in nulls])
    for index, values in enumerate(digest.scores.values()):
        arrays[f"score_{index}"] = values.cast(pl.Float64).to_arrow()
    meta = {
        "format": FORMAT,
        "rows": digest.rows,
        "id_nulls": digest.id_nulls,
        "files": _files(fragment),
        "shape": _shape(schema),
        "columns": columns,
        "scores": list(digest.scores),
    }
    return pa.table(arrays).replace_schema_metadata({_META_KEY: json.dumps(meta).encode()})


def _require(condition: bool, problem: str) -> None:
    if not condition:
        raise ValueError(problem)


def from_table(table: pa.Table, fragment: lance.FragmentMetadata, schema: pa.Schema) -> tuple[Digest, Nulls]:
    """The digest of `fragment`'s physical rows stored in `table`, and its null flags.

    Raises:
        ValueError: `table` was made for other data files, another schema or row count, or is
            not a digest of this format.
    """
    meta = json.loads((table.schema.metadata or {})[_META_KEY])
    _require(meta["format"] == FORMAT, f"format {meta['format']}, not {FORMAT}")
    _require(meta["files"] == _files(fragment), "made for other data files")
    _require(meta["shape"] == _shape(schema), "made for another schema")
    rows = int(meta["rows"])
    _require(rows == fragment.physical_rows == table.num_rows, "row count differs from the fragment's")
    _require([c[0] for c in meta["columns"]] == [n for n in schema.names if n != "id"], "columns differ")
    for field in table.schema:
        kind = field.name.rstrip("0123456789").removesuffix("_")  # hash_3 -> hash
        _require(field.type == _TYPES.get(kind), f"{field.name} is {field.type}")
    # One batch is written: its arrays as they are, without a copy (combine_chunks copies).
    data = {
        name: column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
        for name, column in zip(table.schema.names, table.columns, strict=True)
    }
    columns: dict[str, ColumnDigest] = {}
    nulls: Nulls = {}
    for index, (name, dtype, null_count, has_nulls) in enumerate(meta["columns"]):
        # The type the values are hashed in, as `digest_rows` reads them from this schema.
        expected = as_series(pa.array([], type=schema.field(name).type), name).dtype
        _require(str(expected) == dtype, f"column {name!r} was hashed as {dtype}, reads as {expected}")
        columns[name] = ColumnDigest(expected, data[f"hash_{index}"].to_numpy(), int(null_count))
        if has_nulls:
            nulls[name] = data[f"null_{index}"].to_numpy(zero_copy_only=False)
    scores = {
        name: pl.Series(name, data[f"score_{index}"], dtype=pl.Float64)
        for index, name in enumerate(meta["scores"])
    }
    order = data["order"].to_numpy()
    _require(rows == 0 or (order.min() >= 0 and order.max() < rows), "row positions out of range")
    digest = Digest(
        rows=rows,
        ids=pl.Series("id", data["id"], dtype=pl.String),
        id_hashes=data["id_hash"].to_numpy(),
        order=order,
        id_nulls=int(meta["id_nulls"]),
        columns=columns,
        scores=scores,
    )
    return digest, nulls


def keep_rows(digest: Digest, nulls: Nulls, offsets: np.ndarray) -> Digest:
    """The digest of the rows at `offsets` (ascending physical offsets) of `digest`'s rows: a
    fragment's digest with its deletion vector applied."""
    kept = np.zeros(digest.rows, dtype=bool)
    kept[offsets] = True
    position = np.cumsum(kept) - 1  # each kept row's position among the kept
    sorted_kept = kept[digest.order]  # which of the (sorted) digest's rows stay
    ids = digest.ids.filter(pl.Series(sorted_kept))
    return Digest(
        rows=len(offsets),
        ids=ids,
        id_hashes=digest.id_hashes[sorted_kept],
        order=position[digest.order[sorted_kept]],  # a subsequence: still sorted by id hash
        id_nulls=ids.null_count(),
        columns={
            name: ColumnDigest(
                column.dtype,
                column.hashes[sorted_kept],
                int(nulls[name][offsets].sum()) if name in nulls else 0,
            )
            for name, column in digest.columns.items()
        },
        scores={name: values.gather(offsets) for name, values in digest.scores.items()},
    )


def _read(filesystem: pafs.FileSystem, path: str) -> pa.Table:
    if isinstance(filesystem, pafs.LocalFileSystem):
        source: pa.NativeFile = pa.memory_map(path)  # no copy: the hashes are used in place
    else:
        source = filesystem.open_input_file(path)
    with source:
        return pa.ipc.open_file(source).read_all()


def load(dataset: lance.LanceDataset, fragment: lance.LanceFragment) -> Digest | None:
    """The stored digest of a fragment of `dataset`, its deletions applied; None where none is
    stored or the stored one is unreadable or does not match the fragment."""
    meta = fragment.metadata
    if not meta.files:
        return None
    filesystem, root = _filesystem(dataset.uri)
    path = f"{root}/{DIGEST_DIR}/{digest_name(meta)}"
    try:
        digest, nulls = from_table(_read(filesystem, path), meta, dataset.schema)
        if meta.deletion_file is not None:
            # Row addresses only (fragment id << 32 | offset): no column is read.
            addresses = fragment.to_table(columns=[], with_row_address=True)["_rowaddr"].to_numpy()
            return keep_rows(digest, nulls, (addresses & 0xFFFFFFFF).astype(np.int64))
        return digest
    except FileNotFoundError:
        return None
    except Exception as err:  # noqa: BLE001 - any unreadable digest means: compute it from content
        logger.info("stored digest %s not used (%s); reading the fragment's content", path, err)
        return None


def stored_names(uri: str) -> set[str]:
    """The names of the digest files stored for the dataset at `uri` (one listing)."""
    filesystem, root = _filesystem(uri)
    listed = filesystem.get_file_info(pafs.FileSelector(f"{root}/{DIGEST_DIR}", allow_not_found=True))
    return {info.base_name for info in listed if info.type == pafs.FileType.File}


def _write(filesystem: pafs.FileSystem, path: str, table: pa.Table) -> None:
    # Locally, written aside and moved into place, so a reader never opens half a file; an
    # object store makes a put visible whole.
    local = isinstance(filesystem, pafs.LocalFileSystem)
    target = f"{path}.{uuid.uuid4().hex}.tmp" if local else path
    with filesystem.open_output_stream(target) as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=max(1, table.num_rows))
    if local:
        filesystem.move(target, path)


def store(dataset: lance.LanceDataset, written: Iterable[lance.FragmentMetadata]) -> int:
    """Compute and store the digests of the fragments of `dataset` (a version just committed)
    that `written` (the fragments the commit added) names, read back from Lance exactly as a
    reader reads them.

    Never raises: a digest that cannot be written is logged (once for the call) and skipped,
    and readers compute it from content. A dataset without an `id` column gets none (a diff
    needs ids).

    Returns:
        How many digests were stored.
    """
    stored = 0
    try:
        paths = {fragment.files[0].path for fragment in written if fragment.files}
        schema = dataset.schema
        if not paths or "id" not in schema.names:
            return 0
        filesystem, root = _filesystem(dataset.uri)
        if isinstance(filesystem, pafs.LocalFileSystem):  # an object store needs no folders
            filesystem.create_dir(f"{root}/{DIGEST_DIR}", recursive=True)
        for fragment in dataset.get_fragments():
            meta = fragment.metadata
            if not meta.files or meta.files[0].path not in paths or meta.deletion_file is not None:
                continue
            nulls: Nulls = {}
            digest = digest_rows(
                schema, lambda name, f=fragment: f.to_table(columns=[name]).column(0), null_flags=nulls
            )
            path = f"{root}/{DIGEST_DIR}/{digest_name(meta)}"
            _write(filesystem, path, to_table(digest, nulls, meta, schema))
            stored += 1
    except Exception as err:  # noqa: BLE001 - digests only speed diffs up; the write stands
        logger.warning(
            "could not store the digests of %s version %d (%d stored); diffs will read its content: %s",
            dataset.uri,
            dataset.version,
            stored,
            err,
        )
    return stored


def remove_orphans(uri: str) -> list[str]:
    """Delete the stored digests whose data file is gone (Lance's cleanup removed it: no version
    holds the fragment any more), and leftovers of interrupted writes; returns their names.

    The digests are listed before the data files: a digest is written after its data file, so
    one listed here whose data file is missing from the later listing is an orphan.
    """
    digests = stored_names(uri)
    if not digests:
        return []
    filesystem, root = _filesystem(uri)
    data = filesystem.get_file_info(pafs.FileSelector(f"{root}/data", allow_not_found=True))
    present = {_stem(info.base_name) for info in data}
    removed = []
    for name in sorted(digests):
        if _stem(name) not in present:
            try:
                filesystem.delete_file(f"{root}/{DIGEST_DIR}/{name}")
            except FileNotFoundError:  # another gc removed it
                pass
            removed.append(name)
    return removed
