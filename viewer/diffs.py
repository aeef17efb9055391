"""The fast first part of a diff: rows added and removed by `id`, schema and row-count changes.

The full diff (`datasets_registry.diff`) compares every column of every matched row, which at
a million rows means reading both versions' content (seconds) unless their digests are kept.
When they are not, the viewer shows this summary at once, from the `id` columns alone, and
loads the full diff into the page when it is done.
Ids are matched by a 64-bit hash (two different ids collide with probability about 2**-64 per
pair, which is ignored); the full diff matches the ids themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

import lance
import polars as pl

from datasets_registry.columns import read_column
from datasets_registry.diff import ColumnChange, DatasetDiff, Delta, RowChanges, SchemaDiff
from viewer.errors import ViewerError

SEED = 0x1D5


@dataclass(frozen=True)
class DiffSummary:
    """Rows added and removed by id, rows in both, schema changes, and the row counts."""

    old_ref: str
    new_ref: str
    added: RowChanges
    removed: RowChanges
    matched: int
    schema: SchemaDiff
    row_count: Delta

    @classmethod
    def of(cls, full: DatasetDiff) -> DiffSummary:
        """The summary part of a full diff."""
        return cls(
            old_ref=full.old_ref,
            new_ref=full.new_ref,
            added=full.added,
            removed=full.removed,
            matched=full.changed.count + full.unchanged,
            schema=full.schema,
            row_count=full.row_count,
        )


def _ids(dataset: lance.LanceDataset, ref: str) -> pl.DataFrame:
    if "id" not in dataset.schema.names:
        raise ViewerError(f"a diff matches rows by `id`, and {ref} has no `id` column")
    ids = read_column(dataset, "id").cast(pl.String)
    return pl.DataFrame({"h": ids.hash(seed=SEED), "id": ids})


def schema_diff(old: lance.LanceDataset, new: lance.LanceDataset) -> SchemaDiff:
    """Columns added, removed and retyped from `old` to `new`."""
    old_types = {f.name: f.type for f in old.schema}
    new_types = {f.name: f.type for f in new.schema}
    return SchemaDiff(
        added=[ColumnChange(n, None, str(t)) for n, t in new_types.items() if n not in old_types],
        removed=[ColumnChange(n, str(t), None) for n, t in old_types.items() if n not in new_types],
        retyped=[
            ColumnChange(n, str(old_types[n]), str(t))
            for n, t in new_types.items()
            if n in old_types and old_types[n] != t
        ],
    )


def _changes(ids: pl.Series, sample: int) -> RowChanges:
    return RowChanges(len(ids), ids.sort().head(sample).to_list() if sample > 0 else [])


def diff_summary(
    old: lance.LanceDataset, new: lance.LanceDataset, old_ref: str, new_ref: str, *, sample: int = 5
) -> DiffSummary:
    """Rows added and removed by `id` from `old` to `new`, read from the `id` columns only."""
    old_ids, new_ids = _ids(old, old_ref), _ids(new, new_ref)
    joined = old_ids.join(new_ids, on="h", how="full", coalesce=True)  # one join for both sides
    old_only = joined.filter(pl.col("id_right").is_null())["id"]
    new_only = joined.filter(pl.col("id").is_null())["id_right"]
    return DiffSummary(
        old_ref=old_ref,
        new_ref=new_ref,
        added=_changes(new_only, sample),
        removed=_changes(old_only, sample),
        matched=len(new_ids) - len(new_only),
        schema=schema_diff(old, new),
        row_count=Delta("rows", len(old_ids), len(new_ids)),
    )
