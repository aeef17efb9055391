"""A digest of rows: each row's `id` and a 64-bit hash of its value in every other column, null
counts and score values, sorted by id hash (see `datasets_registry.digests`, which keeps them per
fragment, and `datasets_registry.digest_files`, which stores them beside the data).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from datasets_registry.columns import finite_mean, score_columns, score_values

HASH_SEED = 0x5EED
"""Seed of the per-column content hashes."""
ID_SEED = 0x1D5
"""Seed of the id hashes that ids are matched by (then checked against the ids themselves)."""


@dataclass(frozen=True)
class ColumnDigest:
    """One column of a fragment or version: its polars type, a hash per row, its null count."""

    dtype: pl.DataType
    """The type the values were hashed in; hashes of two columns compare only when it matches."""
    hashes: np.ndarray
    """uint64, one per row, in the digest's `order` (sorted by id hash)."""
    null_count: int


@dataclass(frozen=True)
class Digest:
    """What a diff needs of a fragment's or a version's rows, without their content; the rows
    sorted by the hash of their id."""

    rows: int
    ids: pl.Series
    """The `id` column as strings, in `order`."""
    id_hashes: np.ndarray
    """uint64 hash of each id, in `order`: ascending."""
    order: np.ndarray
    """The rows' positions in scan order, sorted by id hash."""
    id_nulls: int
    columns: dict[str, ColumnDigest]
    """Every column but `id`, in schema order."""
    scores: dict[str, pl.Series]
    """The score-like values (as in stats), float64, keyed by display name, in schema order;
    in scan order (only their means are compared)."""


@dataclass(frozen=True)
class VersionDigest:
    """A version's digest, and its rows sorted by id hash: two versions' ids then match by a
    merge, and the matched rows' hashes are read in order (not scattered over memory)."""

    digest: Digest
    sorted_hashes: np.ndarray
    """The uint64 hash of each row's id, sorted (`digest.id_hashes`)."""
    sorted_ids: pl.Series
    """The ids in `order` (`digest.ids`)."""
    sorted_columns: dict[str, np.ndarray]
    """Each column's content hashes in `order`."""
    hashes_unique: bool
    """No two rows' id hashes are equal (then, and only then, matching by hash is exact)."""
    means: dict[str, float | None]
    """The finite mean of each of `digest.scores`."""

    @property
    def rows(self) -> int:
        return self.digest.rows

    @property
    def order(self) -> np.ndarray:
        """Row positions sorted by id hash."""
        return self.digest.order


def row_hashes(values: pl.Series) -> pl.Series:
    """A 64-bit hash of each value of `values` (nested lists and structs included)."""
    # DataFrame.hash_rows measured 3-8x faster than Series.hash on list<struct> columns.
    return values.to_frame().hash_rows(seed=HASH_SEED)


def as_series(column: pa.ChunkedArray | pa.Array, name: str) -> pl.Series:
    """A column as the polars series its digest hashes (dictionaries decoded)."""
    if pa.types.is_dictionary(column.type):
        # Dictionaries differ between versions and fragments; compare their values.
        column = column.cast(column.type.value_type)
    series = pl.from_arrow(column)
    assert isinstance(series, pl.Series)
    return series.alias(name)


def digest_rows(
    schema: pa.Schema,
    read: Callable[[str], pa.ChunkedArray | pa.Array],
    *,
    null_flags: dict[str, np.ndarray] | None = None,
) -> Digest:
    """The digest of some rows with `schema`, reading one column at a time with `read(name)`.

    Only one column of these rows is held at a time. `schema` must have an `id` column.
    `null_flags`, when given, receives the null flags (bool, one per row) of each column but
    `id` that holds nulls (a stored digest needs them to count nulls after rows are deleted).
    """
    assert "id" in schema.names, "a digest needs an `id` column"
    scored = set(score_columns(schema))
    # The ids first: every other column's hashes are kept in the order of the id hashes.
    # One chunk: gathers from a series of many chunks (one per Lance batch) are slow.
    ids = as_series(read("id"), "id").cast(pl.String).rechunk()
    id_hashes = ids.hash(seed=ID_SEED).to_numpy()
    order = np.argsort(id_hashes)
    rows, id_nulls = len(ids), ids.null_count()
    ids = ids.gather(order)
    columns: dict[str, ColumnDigest] = {}
    scores: dict[str, pl.Series] = {}
    for name in schema.names:
        if name == "id":
            continue
        values = as_series(read(name), name)
        columns[name] = ColumnDigest(values.dtype, row_hashes(values).to_numpy()[order], values.null_count())
        if null_flags is not None and values.null_count():
            null_flags[name] = values.is_null().to_numpy()
        if name in scored:
            scores.update(score_values(name, values))
        del values
    return Digest(rows, ids, id_hashes[order], order, id_nulls, columns, scores)


def join_digests(parts: list[Digest]) -> Digest:
    """The digests of consecutive row ranges (at least one) as one digest."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    # Each part's rows are sorted by id hash already: a stable sort (timsort) of the sorted runs
    # one after another merges them in linear time, where sorting the hashes afresh takes n log n.
    merged = np.argsort(np.concatenate([p.id_hashes for p in parts]), kind="stable")
    columns = {
        name: ColumnDigest(
            column.dtype,
            np.concatenate([p.columns[name].hashes for p in parts])[merged],
            sum(p.columns[name].null_count for p in parts),
        )
        for name, column in first.columns.items()
    }
    # One chunk: a mean then adds up in the same order however Lance split the rows in batches
    # (a mean over the whole column read at once can differ from it in the last bit).
    scores = {name: pl.concat([p.scores[name] for p in parts]).rechunk() for name in first.scores}
    offsets = np.cumsum([0] + [p.rows for p in parts[:-1]])
    runs = np.concatenate([p.order + offset for p, offset in zip(parts, offsets, strict=True)])
    return Digest(
        rows=sum(p.rows for p in parts),
        # One chunk: gathers from a series of many chunks are slow.
        ids=pl.concat([p.ids for p in parts]).rechunk().gather(merged),
        id_hashes=np.concatenate([p.id_hashes for p in parts])[merged],
        order=runs[merged],
        id_nulls=sum(p.id_nulls for p in parts),
        columns=columns,
        scores=scores,
    )


def index_digest(digest: Digest) -> VersionDigest:
    """A version's digest, ready to match: no copies, the version shares the digest's arrays."""
    sorted_hashes = digest.id_hashes
    return VersionDigest(
        digest=digest,
        sorted_hashes=sorted_hashes,
        sorted_ids=digest.ids,
        sorted_columns={name: column.hashes for name, column in digest.columns.items()},
        hashes_unique=not bool(np.any(sorted_hashes[1:] == sorted_hashes[:-1])),
        means={name: finite_mean(values) for name, values in digest.scores.items()},
    )
