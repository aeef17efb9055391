"""Content digests of Lance versions, per fragment, so that a diff need not read content twice.

A digest holds, for each row, its `id` and a 64-bit hash of its value in every other column,
and for each column its null count, plus the score-like values (for their means): about 30
bytes a row and 8 more per column, instead of the content (hundreds of bytes a row of text).

Digests are kept per fragment. A Lance data file never changes once written and a version is a
list of fragments (data files, and a deletion file when rows were deleted), so a fragment held
by two versions holds the same rows in both, and its digest serves every version that holds
it: a version made by appending costs a read of its new fragments only, and a cache of digests
makes any later diff of a version already seen a matter of comparing integers.

A version's digest joins its fragments' digests in scan order (the order of
`LanceDataset.to_table` and the row offsets of `LanceDataset.take`), and sorts its id hashes
once so that two versions' ids are matched by a merge instead of a hash join.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import lance
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
    """uint64, one per row."""
    null_count: int


@dataclass(frozen=True)
class Digest:
    """What a diff needs of a fragment's or a version's rows, without their content."""

    rows: int
    ids: pl.Series
    """The `id` column as strings."""
    id_hashes: np.ndarray
    """uint64 hash of each id."""
    order: np.ndarray
    """Row positions sorted by id hash."""
    id_nulls: int
    columns: dict[str, ColumnDigest]
    """Every column but `id`, in schema order."""
    scores: dict[str, pl.Series]
    """The score-like values (as in stats), float64, keyed by display name, in schema order."""


@dataclass(frozen=True)
class VersionDigest:
    """A version's digest, and its rows sorted by id hash: two versions' ids then match by a
    merge, and the matched rows' hashes are read in order (not scattered over memory)."""

    digest: Digest
    """In row order."""
    sorted_hashes: np.ndarray
    """The uint64 hash of each row's id, sorted."""
    sorted_ids: pl.Series
    """`digest.ids` in `order`."""
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


def _series(column: pa.ChunkedArray | pa.Array, name: str) -> pl.Series:
    if pa.types.is_dictionary(column.type):
        # Dictionaries differ between versions and fragments; compare their values.
        column = column.cast(column.type.value_type)
    series = pl.from_arrow(column)
    assert isinstance(series, pl.Series)
    return series.alias(name)


def digest_rows(schema: pa.Schema, read: Callable[[str], pa.ChunkedArray | pa.Array]) -> Digest:
    """The digest of some rows with `schema`, reading one column at a time with `read(name)`.

    Only one column of these rows is held at a time. `schema` must have an `id` column.
    """
    scored = set(score_columns(schema))
    ids: pl.Series | None = None
    id_nulls = 0
    rows = 0
    columns: dict[str, ColumnDigest] = {}
    scores: dict[str, pl.Series] = {}
    for name in schema.names:
        values = _series(read(name), name)
        rows = len(values)
        if name == "id":
            # One chunk: gathers from a series of many chunks (one per Lance batch) are slow.
            ids, id_nulls = values.cast(pl.String).rechunk(), values.null_count()
            continue
        columns[name] = ColumnDigest(values.dtype, row_hashes(values).to_numpy(), values.null_count())
        if name in scored:
            scores.update(score_values(name, values))
        del values
    assert ids is not None, "a digest needs an `id` column"
    id_hashes = ids.hash(seed=ID_SEED).to_numpy()
    return Digest(rows, ids, id_hashes, np.argsort(id_hashes), id_nulls, columns, scores)


def _join(parts: list[Digest]) -> Digest:
    """The digests of consecutive row ranges (at least one) as one digest."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    columns = {
        name: ColumnDigest(
            column.dtype,
            np.concatenate([p.columns[name].hashes for p in parts]),
            sum(p.columns[name].null_count for p in parts),
        )
        for name, column in first.columns.items()
    }
    # One chunk: a mean then adds up in the same order however Lance split the rows in batches
    # (a mean over the whole column read at once can differ from it in the last bit).
    scores = {name: pl.concat([p.scores[name] for p in parts]).rechunk() for name in first.scores}
    # Each part's ids are sorted already: a stable sort (timsort) of the sorted runs one after
    # another merges them in linear time, where sorting the hashes afresh takes n log n.
    offsets = np.cumsum([0] + [p.rows for p in parts[:-1]])
    runs = np.concatenate([p.order + offset for p, offset in zip(parts, offsets, strict=True)])
    merged = np.argsort(np.concatenate([p.id_hashes[p.order] for p in parts]), kind="stable")
    return Digest(
        rows=sum(p.rows for p in parts),
        ids=pl.concat([p.ids for p in parts]).rechunk(),
        id_hashes=np.concatenate([p.id_hashes for p in parts]),
        order=runs[merged],
        id_nulls=sum(p.id_nulls for p in parts),
        columns=columns,
        scores=scores,
    )


def _index(digest: Digest) -> VersionDigest:
    order = digest.order
    sorted_hashes = digest.id_hashes[order]
    return VersionDigest(
        digest=digest,
        sorted_hashes=sorted_hashes,
        sorted_ids=digest.ids.gather(order),
        sorted_columns={name: column.hashes[order] for name, column in digest.columns.items()},
        hashes_unique=not bool(np.any(sorted_hashes[1:] == sorted_hashes[:-1])),
        means={name: finite_mean(values) for name, values in digest.scores.items()},
    )


def _fragment_key(uri: str, shape: tuple[tuple[str, str], ...], fragment: lance.LanceFragment) -> Hashable:
    """What makes a fragment's rows what they are: its data files and its deletion file."""
    meta = fragment.metadata
    files = tuple((f.path, tuple(f.fields)) for f in meta.files)
    deletion = meta.deletion_file.json() if meta.deletion_file is not None else None
    return (uri, shape, fragment.fragment_id, files, deletion)


class DigestCache:
    """Digests of fragments and versions, least recently used dropped past `max_rows` rows.

    Safe to share between threads: two threads asking for the same missing digest may both
    compute it (the same result), but the bookkeeping is locked.
    """

    def __init__(self, max_rows: int | None = None) -> None:
        """Args:
        max_rows: How many rows of digests to keep, fragments and versions counted apart
            (a one-fragment version counts twice; its digests took about 70 MB a million rows
            of six columns, `benchmarks/ui_1m.py`'s); None keeps everything.
        """
        self.max_rows = max_rows
        self._items: OrderedDict[Hashable, Digest | VersionDigest] = OrderedDict()
        self._rows = 0
        self._lock = threading.Lock()
        self.fragments_read = 0
        """How many fragments' digests were computed (read from Lance) so far."""
        self.rows_read = 0
        """How many rows those fragments held."""

    @property
    def rows_kept(self) -> int:
        """How many rows of digests are kept now (fragments and versions counted apart)."""
        return self._rows

    def _get(self, key: Hashable) -> Digest | VersionDigest | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def _put(self, key: Hashable, item: Digest | VersionDigest) -> None:
        if self.max_rows is not None and item.rows > self.max_rows:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = item
            self._rows += item.rows
            while self.max_rows is not None and self._rows > self.max_rows:
                _, dropped = self._items.popitem(last=False)
                self._rows -= dropped.rows

    @staticmethod
    def _keys(dataset: lance.LanceDataset) -> tuple[list[lance.LanceFragment], list[Hashable], Hashable]:
        shape = tuple((f.name, str(f.type)) for f in dataset.schema)
        fragments = dataset.get_fragments()
        keys = [_fragment_key(dataset.uri, shape, f) for f in fragments]
        return fragments, keys, ("version", dataset.uri, shape, tuple(keys))

    def has_version(self, dataset: lance.LanceDataset) -> bool:
        """Whether the digest of this version is kept (so a diff of it reads no content)."""
        return self._get(self._keys(dataset)[2]) is not None

    def version(self, dataset: lance.LanceDataset) -> VersionDigest:
        """The digest of a Lance version (which must have an `id` column), reading only the
        fragments whose digests are not kept."""
        fragments, keys, version_key = self._keys(dataset)
        kept = self._get(version_key)
        if isinstance(kept, VersionDigest):
            return kept
        schema = dataset.schema
        parts = []
        for fragment, key in zip(fragments, keys, strict=True):
            part = self._get(key)
            if not isinstance(part, Digest):
                part = digest_rows(schema, lambda name, f=fragment: f.to_table(columns=[name]).column(0))
                self._put(key, part)
                with self._lock:
                    self.fragments_read += 1
                    self.rows_read += part.rows
            parts.append(part)
        if parts:
            result = _index(_join(parts))
        else:  # a version without rows has no fragments
            empty = schema.empty_table()
            result = _index(digest_rows(schema, lambda name: empty.column(name)))
        self._put(version_key, result)
        return result
