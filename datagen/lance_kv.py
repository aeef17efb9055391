"""A content-addressed key -> value cache stored as a Lance table, written by many workers at once.

The LLM-call cache (datagen/cache.py) and the stage-result cache (datagen/stage_cache.py) are
both this table with a value column of their own. It stays fast to read as it grows
(benchmarks/cache_lookup.py: a lookup of 100 keys among 1M cached calls):

- a BTREE index on `key` answers lookups; rows written since its last refresh are scanned, and
  the writer that finds too many of them refreshes it (`optimize_indices`);
- puts are a `merge_insert` on `key` that inserts only keys not yet there, so the table never
  holds a key twice, even when Ray actors write the same key at once: Lance retries a
  merge_insert that lost a commit race against the new latest version;
- every put adds a small fragment: once there are many, the writer compacts them
  (`compact_files`) and removes versions older than `keep_versions` (`cleanup_old_versions`).

Maintenance is opportunistic: a writer that loses a race to another writer's maintenance
leaves it to the next put; lookups stay correct either way, only slower.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import lance
import lance.commit
import pyarrow as pa

from datasets_registry.storage import create_empty

# `key` is the table's primary key for Lance: a merge_insert then records the keys it inserts,
# and of two writers racing to insert the same key the second retries instead of duplicating it.
PRIMARY_KEY = {"lance-schema:unenforced-primary-key": "true"}
KEY_INDEX = "key_idx"
# Lance's 2.1 file format: reading 100 scattered rows of the LLM cache's nested completions
# column took ~5 ms at 1M rows where the default 2.2 took ~45 ms. Set when a table is created.
DATA_STORAGE_VERSION = "2.1"
# How often and for how long Lance retries a merge_insert that conflicts with another commit.
COMMIT_RETRIES = 20
COMMIT_RETRY_TIMEOUT = timedelta(seconds=120)


def key_value_schema(value: pa.Field) -> pa.Schema:
    """The table's schema: a non-null string `key` (Lance's primary key) and the value column."""
    return pa.schema([pa.field("key", pa.string(), nullable=False, metadata=PRIMARY_KEY), value])


def _quote(key: str) -> str:
    """A key as a SQL string literal (keys are hex digests; quotes are escaped all the same)."""
    return "'" + key.replace("'", "''") + "'"


class LanceKeyValueCache:
    """Lance-backed map from string keys to values of one Arrow type; many writers at once.

    Args:
        uri: Where the Lance table lives (created by the first put).
        value: The value column (its name and Arrow type).
        index_lag_rows: Refresh the key index once this many rows are unindexed.
        index_lag_fragments: ... or once this many fragments are (each is opened by a lookup).
        compact_fragments: Compact once the table has this many fragments below Lance's
            target size (one per put until then).
        keep_versions: Versions older than this are removed after a compaction; a reader
            that opened one earlier than that is long done with it.
    """

    def __init__(
        self,
        uri: str,
        value: pa.Field,
        *,
        index_lag_rows: int = 4096,
        index_lag_fragments: int = 8,
        compact_fragments: int = 32,
        keep_versions: timedelta = timedelta(minutes=10),
    ) -> None:
        self.uri = uri
        self.value = value
        self.schema = key_value_schema(value)
        self.index_lag_rows = index_lag_rows
        self.index_lag_fragments = index_lag_fragments
        self.compact_fragments = compact_fragments
        self.keep_versions = keep_versions
        # Held open so the index pages Lance caches in its session serve the next lookup too.
        self._dataset: lance.LanceDataset | None = None

    def get(self, keys: Sequence[str]) -> dict[str, Any]:
        """The cached values (as Python objects) of those keys that are present."""
        if not keys:
            return {}
        dataset = self._latest()
        if dataset is None:
            return {}
        wanted = ", ".join(_quote(key) for key in sorted(set(keys)))
        table = dataset.to_table(columns=["key", self.value.name], filter=f"key IN ({wanted})")
        return dict(zip(table["key"].to_pylist(), table[self.value.name].to_pylist(), strict=True))

    def put(self, entries: Mapping[str, Any]) -> None:
        """Store values by key; a key already stored keeps its first value."""
        if not entries:
            return
        table = pa.table(
            {"key": list(entries), self.value.name: pa.array(list(entries.values()), self.value.type)},
            schema=self.schema,
        )
        dataset = self._latest()
        if dataset is None:
            # Racing workers must not undo each other's first rows: one empty creation, under a lock.
            create_empty(self.uri, self.schema, data_storage_version=DATA_STORAGE_VERSION)
            dataset = self._latest()
            assert dataset is not None
        (
            dataset.merge_insert("key")
            .when_not_matched_insert_all()
            .use_index(False)  # the indexed path loses the inserted keys: duplicates
            .conflict_retries(COMMIT_RETRIES)
            .retry_timeout(COMMIT_RETRY_TIMEOUT)
            .execute(table)
        )
        self.maintain()

    def maintain(self) -> None:
        """Index new rows, compact small fragments and drop old versions, where due."""
        dataset = self._latest()
        if dataset is None or dataset.count_rows() == 0:
            return
        try:
            if not any(index.name == KEY_INDEX for index in dataset.describe_indices()):
                dataset.create_scalar_index("key", "BTREE", name=KEY_INDEX, replace=False)
                dataset.checkout_latest()
            stats = dataset.stats.index_stats(KEY_INDEX)
            if (
                stats["num_unindexed_rows"] >= self.index_lag_rows
                or stats["num_unindexed_fragments"] >= self.index_lag_fragments
            ):
                dataset.optimize.optimize_indices(index_names=[KEY_INDEX])
                dataset.checkout_latest()
            target = 1024 * 1024  # Lance's default target_rows_per_fragment
            small = sum(1 for f in dataset.get_fragments() if f.metadata.physical_rows < target)
            if small >= self.compact_fragments:
                dataset.optimize.compact_files(target_rows_per_fragment=target)
                dataset.cleanup_old_versions(older_than=self.keep_versions)
        except (lance.commit.CommitConflictError, OSError, RuntimeError) as error:
            if not _lost_a_race(error):
                raise
            # Another writer maintained the table meanwhile; the next put looks again.

    def _latest(self) -> lance.LanceDataset | None:
        """The table at its latest version, or None before the first put."""
        if self._dataset is None:
            try:
                self._dataset = lance.dataset(self.uri)
            except (FileNotFoundError, ValueError):
                return None
        else:
            self._dataset.checkout_latest()
        return self._dataset


def _lost_a_race(error: Exception) -> bool:
    """Whether a maintenance step failed because another writer's commit came first.

    Lance reports a lost commit as an OSError "Retryable commit conflict ...", and an index
    another writer created meanwhile as a RuntimeError "Index name ... already exists".
    """
    if isinstance(error, lance.commit.CommitConflictError):
        return True
    text = str(error)
    return "commit conflict" in text or (f"Index name '{KEY_INDEX}' already exists" in text)
