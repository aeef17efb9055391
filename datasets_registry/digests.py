"""Content digests of Lance versions, per fragment, so that a diff need not read content twice.

A digest holds, for each row, its `id` and a 64-bit hash of its value in every other column,
and for each column its null count, plus the score-like values (for their means): about 30
bytes a row and 8 more per column, instead of the content (hundreds of bytes a row of text).

Digests are kept per fragment. A Lance data file never changes once written and a version is a
list of fragments (data files, and a deletion file when rows were deleted), so a fragment held
by two versions holds the same rows in both, and its digest serves every version that holds
it: a version made by appending costs a read of its new fragments only, and a cache of digests
makes any later diff of a version already seen a matter of comparing integers.

The registry stores each new fragment's digest beside the data when it commits a version
(`datasets_registry.digest_files`); a cache loads a fragment's stored digest, where there is a
valid one, before it reads the fragment's content.

A digest holds its rows sorted by id hash, with each row's position in scan order (the order
of `LanceDataset.to_table` and the row offsets of `LanceDataset.take`): two versions' ids are
then matched by a merge instead of a hash join, and a version of one fragment is indexed
without copying anything. A version's digest merges its fragments' sorted runs.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

import lance

from datasets_registry import digest_files
from datasets_registry.row_digest import Digest, VersionDigest, digest_rows, index_digest, join_digests


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

    def __init__(self, max_rows: int | None = None, *, stored: bool = True) -> None:
        """Args:
        max_rows: How many rows of digests to keep, fragments and versions counted apart
            (a one-fragment version counts twice, though it shares its fragment's arrays);
            None keeps everything.
        stored: Load a fragment's digest stored beside the data (`digest_files`) before
            reading its content; False always reads content.
        """
        self.max_rows = max_rows
        self.stored = stored
        self._items: OrderedDict[Hashable, Digest | VersionDigest] = OrderedDict()
        self._rows = 0
        self._lock = threading.Lock()
        self.fragments_read = 0
        """How many fragments' digests were computed (read from Lance) so far."""
        self.rows_read = 0
        """How many rows those fragments held."""
        self.fragments_loaded = 0
        """How many fragments' digests were loaded from stored digest files so far."""

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

    def ready(self, dataset: lance.LanceDataset) -> bool:
        """Whether the digest of this version comes without reading content: it is kept, or
        each of its fragments' digests is kept or stored beside the data (one listing)."""
        fragments, keys, version_key = self._keys(dataset)
        if self._get(version_key) is not None:
            return True
        missing = [f.metadata for f, key in zip(fragments, keys, strict=True) if self._get(key) is None]
        if not missing:
            return True
        if not self.stored:
            return False
        try:
            names = digest_files.stored_names(dataset.uri)
        except OSError:
            return False
        return all(meta.files and digest_files.digest_name(meta) in names for meta in missing)

    def version(self, dataset: lance.LanceDataset) -> VersionDigest:
        """The digest of a Lance version (which must have an `id` column), reading only the
        fragments whose digests are neither kept nor stored."""
        fragments, keys, version_key = self._keys(dataset)
        kept = self._get(version_key)
        if isinstance(kept, VersionDigest):
            return kept
        schema = dataset.schema
        parts = []
        for fragment, key in zip(fragments, keys, strict=True):
            part = self._get(key)
            if not isinstance(part, Digest):
                part = digest_files.load(dataset, fragment) if self.stored else None
                if part is not None:
                    with self._lock:
                        self.fragments_loaded += 1
                else:
                    part = digest_rows(schema, lambda name, f=fragment: f.to_table(columns=[name]).column(0))
                    with self._lock:
                        self.fragments_read += 1
                        self.rows_read += part.rows
                self._put(key, part)
            parts.append(part)
        if parts:
            result = index_digest(join_digests(parts))
        else:  # a version without rows has no fragments
            empty = schema.empty_table()
            result = index_digest(digest_rows(schema, lambda name: empty.column(name)))
        self._put(version_key, result)
        return result
