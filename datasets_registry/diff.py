"""Differences between two dataset versions: rows added, removed and changed by `id`, schema
changes, and how row counts, nulls and score means moved.

Rows are matched by `id`. A matched row is changed when any column present in both versions
holds different content; content is compared through a 64-bit polars row hash per column
(vectorised, and it covers nested list and struct columns). Two different values hash alike
with probability about 2**-64 per row and column, which is ignored.

The hashes come from each version's digest (`datasets_registry.digests`): read one column of
one fragment at a time, and kept per fragment, so a fragment both versions hold (an append
keeps the previous version's fragments) is read once, and a `DigestCache` passed in by a
long-lived caller (the viewer) makes later diffs of versions it has seen read no content at
all. Ids are matched by a merge of the versions' sorted 64-bit id hashes, then checked against
the ids themselves, so the matching is exact; if two ids of one version share a hash, or a
matched pair's ids differ, the ids are joined as strings instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import lance
import numpy as np
import polars as pl

from datasets_registry.columns import LanceVersion, read_column
from datasets_registry.digests import DigestCache
from datasets_registry.errors import RegistryError
from datasets_registry.row_digest import VersionDigest, row_hashes


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
    changed_rows: list[tuple[int, int]] = field(default_factory=list)
    """Row offsets (as `LanceDataset.take` counts them) in the old and the new version of each
    id in `changed.sample`, in the same order."""


def _require_id_column(dataset: lance.LanceDataset, ref: str) -> None:
    if "id" not in dataset.schema.names:
        raise RegistryError(
            f"diff needs an `id` column to match rows, and {ref} has none; "
            f"its columns: {', '.join(dataset.schema.names)}"
        )


def _checked_digest(cache: DigestCache, dataset: lance.LanceDataset, ref: str) -> VersionDigest:
    """The digest of a version; raise unless it has an `id` on every row, each one once."""
    _require_id_column(dataset, ref)
    version = cache.version(dataset)
    ids = version.digest.ids
    if version.digest.id_nulls:
        raise RegistryError(f"diff needs an id on every row; {ref} has {version.digest.id_nulls:,} null ids")
    # Distinct hashes prove distinct ids; equal hashes are checked on the ids themselves.
    if not version.hashes_unique and ids.n_unique() != len(ids):
        duplicated = ids.filter(ids.is_duplicated())
        examples = ", ".join(repr(i) for i in duplicated.unique().sort().head(3).to_list())
        raise RegistryError(
            f"diff needs unique ids; {ref} repeats {duplicated.n_unique():,} ids, e.g. {examples}"
        )
    return version


def _match(old: VersionDigest, new: VersionDigest) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Positions in each version's id-hash order (`VersionDigest.order`): (old, new) of each id
    in both, both ascending, then of the ids only in new, and of the ids only in old."""
    if old.hashes_unique and new.hashes_unique and old.rows and new.rows:
        at = np.searchsorted(old.sorted_hashes, new.sorted_hashes)
        np.minimum(at, old.rows - 1, out=at)
        hit = old.sorted_hashes[at] == new.sorted_hashes
        old_both, new_both = at[hit], np.flatnonzero(hit)
        if bool((old.sorted_ids.gather(old_both) == new.sorted_ids.gather(new_both)).all()):
            in_new = np.zeros(old.rows, dtype=bool)
            in_new[old_both] = True
            return old_both, new_both, np.flatnonzero(~hit), np.flatnonzero(~in_new)
    # Equal hashes of different ids (about 2**-64 a pair): join the ids themselves.
    old_keys = pl.LazyFrame({"id": old.sorted_ids, "old": pl.int_range(old.rows, eager=True)})
    new_keys = pl.LazyFrame({"id": new.sorted_ids, "new": pl.int_range(new.rows, eager=True)})
    keys = old_keys.join(new_keys, on="id", how="full", coalesce=True).collect()
    both = keys.filter(pl.col("old").is_not_null() & pl.col("new").is_not_null()).sort("new")
    return (
        both["old"].to_numpy(),
        both["new"].to_numpy(),
        keys.filter(pl.col("old").is_null())["new"].to_numpy(),
        keys.filter(pl.col("new").is_null())["old"].to_numpy(),
    )


def _sample(ids: pl.Series, sample: int) -> RowChanges:
    # bottom_k then sort: the smallest ids in order, without sorting them all.
    return RowChanges(len(ids), ids.bottom_k(sample).sort().to_list() if sample > 0 and len(ids) else [])


def _comparable(old: pl.Series, new: pl.Series) -> pl.Series | None:
    """`old` in `new`'s polars type, or None when its values do not convert exactly."""
    if old.dtype == new.dtype:
        return old
    try:
        return old.cast(new.dtype, strict=True)
    except (pl.exceptions.InvalidOperationError, pl.exceptions.ComputeError):
        return None


def _retyped_hashes(
    old_ds: lance.LanceDataset, new_ds: lance.LanceDataset, column: str
) -> tuple[np.ndarray, np.ndarray] | None:
    """Both versions' hashes of a column whose polars type changed, with the old values cast
    to the new type first; None when they do not convert."""
    new_values = read_column(new_ds, column)
    comparable = _comparable(read_column(old_ds, column), new_values)
    if comparable is None:
        return None
    return row_hashes(comparable).to_numpy(), row_hashes(new_values).to_numpy()


def diff_versions(
    old: LanceVersion, new: LanceVersion, *, sample: int = 5, digests: DigestCache | None = None
) -> DatasetDiff:
    """Compare two versions, of one dataset or of two different datasets, row by row by `id`.

    Args:
        old: The version to compare from (a `DatasetVersion`, or anything with `ref` and
            `to_lance()`).
        new: The version to compare to.
        sample: How many example ids to keep for each of added, removed and changed.
        digests: Where to find and keep the versions' digests; None: a cache for this call
            only (a fragment both versions hold is still read once).

    Returns:
        Rows added, removed and changed (same id, different content in a column present in
        both), schema changes, and old -> new row count, null counts and score means.

    Raises:
        RegistryError: A version has no `id` column, or null or repeated ids.
    """
    cache = digests if digests is not None else DigestCache()
    old_ds, new_ds = old.to_lance(), new.to_lance()
    old_v = _checked_digest(cache, old_ds, old.ref)
    new_v = _checked_digest(cache, new_ds, new.ref)
    old_both, new_both, added, removed = _match(old_v, new_v)

    old_types = {f.name: f.type for f in old_ds.schema}
    new_types = {f.name: f.type for f in new_ds.schema}
    common = [name for name in new_types if name in old_types]
    schema = SchemaDiff(
        added=[ColumnChange(n, None, str(t)) for n, t in new_types.items() if n not in old_types],
        removed=[ColumnChange(n, str(t), None) for n, t in old_types.items() if n not in new_types],
        retyped=[
            ColumnChange(n, str(old_types[n]), str(new_types[n]))
            for n in common
            if old_types[n] != new_types[n]
        ],
    )

    changed_mask = np.zeros(len(old_both), dtype=bool)
    changed_by_column: dict[str, int] = {}
    compared: list[str] = []
    uncompared: list[str] = []
    null_counts: list[Delta] = []
    for column in common:
        if column == "id":
            null_counts.append(Delta(column, old_v.digest.id_nulls, new_v.digest.id_nulls))
            continue
        old_c, new_c = old_v.digest.columns[column], new_v.digest.columns[column]
        null_counts.append(Delta(column, old_c.null_count, new_c.null_count))
        if old_c.dtype == new_c.dtype:
            old_hashes, new_hashes = old_v.sorted_columns[column], new_v.sorted_columns[column]
        else:  # retyped: only the hashes of old values cast to the new type compare
            retyped = _retyped_hashes(old_ds, new_ds, column)
            if retyped is None:
                uncompared.append(column)
                continue
            old_hashes, new_hashes = retyped[0][old_v.order], retyped[1][new_v.order]
        differs = old_hashes[old_both] != new_hashes[new_both]
        changed_by_column[column] = int(differs.sum())
        changed_mask |= differs
        compared.append(column)

    old_means, new_means = old_v.means, new_v.means
    means = [Delta(name, old_means.get(name), new_means.get(name)) for name in old_means]
    means += [Delta(name, None, value) for name, value in new_means.items() if name not in old_means]

    changed = pl.DataFrame(
        {
            "id": new_v.sorted_ids.gather(new_both[changed_mask]),
            "old_row": old_v.order[old_both[changed_mask]],
            "new_row": new_v.order[new_both[changed_mask]],
        }
    )
    first = changed.bottom_k(sample, by="id").sort("id") if sample > 0 else changed.clear()
    return DatasetDiff(
        old_ref=old.ref,
        new_ref=new.ref,
        added=_sample(new_v.sorted_ids.gather(added), sample),
        removed=_sample(old_v.sorted_ids.gather(removed), sample),
        changed=RowChanges(len(changed), first["id"].to_list()),
        unchanged=len(old_both) - len(changed),
        changed_by_column=changed_by_column,
        compared_columns=compared,
        uncompared_columns=uncompared,
        schema=schema,
        row_count=Delta("rows", old_v.rows, new_v.rows),
        null_counts=null_counts,
        means=means,
        changed_rows=list(zip(first["old_row"].to_list(), first["new_row"].to_list(), strict=True)),
    )
