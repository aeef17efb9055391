"""Differences between two dataset versions: rows added, removed and changed by `id`, schema
changes, and how row counts, nulls and score means moved.

Rows are matched by `id`. A matched row is changed when any column present in both versions
holds different content; content is compared through a 64-bit polars row hash per column
(vectorised, and it covers nested list and struct columns), read one column at a time from
Lance so memory stays at one column of each version plus a few integers per row. Two different
values hash alike with probability about 2**-64 per row and column, which is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

import lance
import polars as pl

from datasets_registry.columns import LanceVersion, finite_mean, read_column, score_columns, score_values
from datasets_registry.errors import RegistryError

HASH_SEED = 0x5EED


@dataclass(frozen=True)
class RowChanges:
    """How many rows fall in one class (added, removed or changed) and a few of their ids."""

    count: int
    sample: list[str]
    """Up to `sample` ids of the class, smallest first."""


@dataclass(frozen=True)
class ColumnChange:
    """A column added (no old type), removed (no new type) or retyped (both types)."""

    name: str
    old_type: str | None
    new_type: str | None


@dataclass(frozen=True)
class SchemaDiff:
    """Columns added, removed and retyped from the old version to the new one."""

    added: list[ColumnChange]
    removed: list[ColumnChange]
    retyped: list[ColumnChange]

    @property
    def unchanged(self) -> bool:
        return not (self.added or self.removed or self.retyped)


@dataclass(frozen=True)
class Delta:
    """One figure in the old and the new version; None where a version lacks it."""

    name: str
    old: float | None
    new: float | None

    @property
    def delta(self) -> float | None:
        """new - old, or None when either side is missing."""
        return None if self.old is None or self.new is None else self.new - self.old


@dataclass(frozen=True)
class DatasetDiff:
    """What differs between two dataset versions, matched by `id`."""

    old_ref: str
    new_ref: str
    added: RowChanges
    removed: RowChanges
    changed: RowChanges
    unchanged: int
    changed_by_column: dict[str, int]
    """For each compared column, how many matched rows differ in it (a row may count in several)."""
    compared_columns: list[str]
    uncompared_columns: list[str]
    """Retyped columns whose old values do not convert to the new type, left out of `changed`."""
    schema: SchemaDiff
    row_count: Delta
    null_counts: list[Delta]
    """Null count of each column present in both versions."""
    means: list[Delta]
    """Mean of each score-like value (as in stats) present in either version."""


def _require_ids(dataset: lance.LanceDataset, ref: str) -> pl.Series:
    """The `id` column of a version as strings; raise unless present, non-null and unique."""
    if "id" not in dataset.schema.names:
        raise RegistryError(
            f"diff needs an `id` column to match rows, and {ref} has none; "
            f"its columns: {', '.join(dataset.schema.names)}"
        )
    ids = read_column(dataset, "id").cast(pl.String)
    if ids.null_count():
        raise RegistryError(f"diff needs an id on every row; {ref} has {ids.null_count():,} null ids")
    if ids.n_unique() != len(ids):  # the cheap check; find the culprits only on failure
        duplicated = ids.filter(ids.is_duplicated())
        examples = ", ".join(repr(i) for i in duplicated.unique().sort().head(3).to_list())
        raise RegistryError(
            f"diff needs unique ids; {ref} repeats {duplicated.n_unique():,} ids, e.g. {examples}"
        )
    return ids


def _sample(ids: pl.Series, sample: int) -> RowChanges:
    return RowChanges(len(ids), ids.sort().head(sample).to_list() if sample > 0 else [])


def _comparable(old: pl.Series, new: pl.Series) -> pl.Series | None:
    """`old` in `new`'s polars type, or None when its values do not convert exactly."""
    if old.dtype == new.dtype:
        return old
    try:
        return old.cast(new.dtype, strict=True)
    except (pl.exceptions.InvalidOperationError, pl.exceptions.ComputeError):
        return None


def _row_hashes(values: pl.Series) -> pl.Series:
    # DataFrame.hash_rows measured 3-8x faster than Series.hash on list<struct> columns.
    return values.to_frame().hash_rows(seed=HASH_SEED)


def _means(
    dataset: lance.LanceDataset, columns: list[str], cache: dict[str, pl.Series]
) -> dict[str, float | None]:
    """Finite means of the score-like values in `columns`, reading only uncached columns."""
    means: dict[str, float | None] = {}
    for column in columns:
        values = cache[column] if column in cache else read_column(dataset, column)
        for name, series in score_values(column, values).items():
            means[name] = finite_mean(series)
    return means


def diff_versions(old: LanceVersion, new: LanceVersion, *, sample: int = 5) -> DatasetDiff:
    """Compare two versions, of one dataset or of two different datasets, row by row by `id`.

    Args:
        old: The version to compare from (a `DatasetVersion`, or anything with `ref` and
            `to_lance()`).
        new: The version to compare to.
        sample: How many example ids to keep for each of added, removed and changed.

    Returns:
        Rows added, removed and changed (same id, different content in a column present in
        both), schema changes, and old -> new row count, null counts and score means.

    Raises:
        RegistryError: A version has no `id` column, or null or repeated ids.
    """
    old_ds, new_ds = old.to_lance(), new.to_lance()
    old_ids, new_ids = _require_ids(old_ds, old.ref), _require_ids(new_ds, new.ref)
    # Row positions: every later column read returns rows in this same order.
    old_keys = pl.LazyFrame({"id": old_ids, "old_row": pl.int_range(len(old_ids), eager=True)})
    new_keys = pl.LazyFrame({"id": new_ids, "new_row": pl.int_range(len(new_ids), eager=True)})
    keys = old_keys.join(new_keys, on="id", how="full", coalesce=True).collect()
    del old_ids, new_ids
    added = keys.filter(pl.col("old_row").is_null())["id"]
    removed = keys.filter(pl.col("new_row").is_null())["id"]
    matched = keys.filter(pl.col("old_row").is_not_null() & pl.col("new_row").is_not_null())
    old_rows, new_rows = matched["old_row"], matched["new_row"]

    old_schema, new_schema = old_ds.schema, new_ds.schema
    old_types = {f.name: f.type for f in old_schema}
    new_types = {f.name: f.type for f in new_schema}
    common = [name for name in new_schema.names if name in old_types]
    schema = SchemaDiff(
        added=[ColumnChange(n, None, str(t)) for n, t in new_types.items() if n not in old_types],
        removed=[ColumnChange(n, str(t), None) for n, t in old_types.items() if n not in new_types],
        retyped=[
            ColumnChange(n, str(old_types[n]), str(new_types[n]))
            for n in common
            if old_types[n] != new_types[n]
        ],
    )
    old_scored, new_scored = score_columns(old_schema), score_columns(new_schema)

    changed_mask = pl.Series("changed", [False] * len(matched), dtype=pl.Boolean)
    changed_by_column: dict[str, int] = {}
    compared: list[str] = []
    uncompared: list[str] = []
    null_counts: list[Delta] = []
    old_cache: dict[str, pl.Series] = {}
    new_cache: dict[str, pl.Series] = {}
    for column in common:
        old_values, new_values = read_column(old_ds, column), read_column(new_ds, column)
        null_counts.append(Delta(column, old_values.null_count(), new_values.null_count()))
        # Score columns are small; keep them for the means instead of reading them again.
        if column in old_scored:
            old_cache[column] = old_values
        if column in new_scored:
            new_cache[column] = new_values
        if column == "id":
            continue
        comparable = _comparable(old_values, new_values)
        if comparable is None:
            uncompared.append(column)
            continue
        differs = _row_hashes(comparable).gather(old_rows) != _row_hashes(new_values).gather(new_rows)
        changed_by_column[column] = int(differs.sum())
        changed_mask = changed_mask | differs
        compared.append(column)
        del old_values, new_values, comparable, differs

    old_means = _means(old_ds, old_scored, old_cache)
    new_means = _means(new_ds, new_scored, new_cache)
    means = [Delta(name, old_means.get(name), new_means.get(name)) for name in old_means]
    means += [Delta(name, None, value) for name, value in new_means.items() if name not in old_means]
    changed = matched.filter(changed_mask)["id"]
    return DatasetDiff(
        old_ref=old.ref,
        new_ref=new.ref,
        added=_sample(added, sample),
        removed=_sample(removed, sample),
        changed=_sample(changed, sample),
        unchanged=len(matched) - len(changed),
        changed_by_column=changed_by_column,
        compared_columns=compared,
        uncompared_columns=uncompared,
        schema=schema,
        row_count=Delta("rows", old_ds.count_rows(), new_ds.count_rows()),
        null_counts=null_counts,
        means=means,
    )
