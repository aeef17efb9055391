"""The digest-based diff gives the same answers as reading both versions whole, on versions made
by appends, deletes, updates and overwrites (shared fragments, deletion files, several
fragments), and reads a fragment that two versions share only once."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import lance
import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from datasets_registry import Registry
from datasets_registry.columns import finite_mean, read_column, score_columns, score_values
from datasets_registry.diff import (
    ColumnChange,
    DatasetDiff,
    Delta,
    RowChanges,
    SchemaDiff,
    _match,
    diff_versions,
)
from datasets_registry.digests import DigestCache
from datasets_registry.kinds import MESSAGES_TYPE
from datasets_registry.row_digest import Digest, VersionDigest

SEED = 0x5EED


def reference_diff(old: Version, new: Version, sample: int = 5) -> DatasetDiff:
    """The diff as it was computed before digests: every column of both versions read whole,
    ids joined as strings, the full id lists sorted for the samples."""
    old_ds, new_ds = old.to_lance(), new.to_lance()
    old_ids = read_column(old_ds, "id").cast(pl.String)
    new_ids = read_column(new_ds, "id").cast(pl.String)
    keys = (
        pl.DataFrame({"id": old_ids, "o": pl.int_range(len(old_ids), eager=True)})
        .join(
            pl.DataFrame({"id": new_ids, "n": pl.int_range(len(new_ids), eager=True)}),
            on="id",
            how="full",
            coalesce=True,
        )
        .sort("id")
    )
    matched = keys.filter(pl.col("o").is_not_null() & pl.col("n").is_not_null())
    old_types = {f.name: f.type for f in old_ds.schema}
    new_types = {f.name: f.type for f in new_ds.schema}
    common = [n for n in new_types if n in old_types]
    changed = np.zeros(len(matched), dtype=bool)
    by_column, compared, uncompared, nulls = {}, [], [], []
    for column in common:
        old_values, new_values = read_column(old_ds, column), read_column(new_ds, column)
        nulls.append(Delta(column, old_values.null_count(), new_values.null_count()))
        if column == "id":
            continue
        if old_values.dtype != new_values.dtype:
            try:
                old_values = old_values.cast(new_values.dtype, strict=True)
            except (pl.exceptions.InvalidOperationError, pl.exceptions.ComputeError):
                uncompared.append(column)
                continue
        old_hash = old_values.to_frame().hash_rows(seed=SEED).gather(matched["o"]).to_numpy()
        new_hash = new_values.to_frame().hash_rows(seed=SEED).gather(matched["n"]).to_numpy()
        by_column[column] = int((old_hash != new_hash).sum())
        changed |= old_hash != new_hash
        compared.append(column)

    def means(ds: lance.LanceDataset) -> dict[str, float | None]:
        found = {}
        for column in score_columns(ds.schema):
            for name, values in score_values(column, read_column(ds, column)).items():
                found[name] = finite_mean(values)
        return found

    old_means, new_means = means(old_ds), means(new_ds)
    changed_ids = matched.filter(pl.Series(changed))
    return DatasetDiff(
        old_ref=old.ref,
        new_ref=new.ref,
        added=RowChanges(
            keys["o"].null_count(), keys.filter(pl.col("o").is_null())["id"].head(sample).to_list()
        ),
        removed=RowChanges(
            keys["n"].null_count(), keys.filter(pl.col("n").is_null())["id"].head(sample).to_list()
        ),
        changed=RowChanges(len(changed_ids), changed_ids["id"].head(sample).to_list()),
        unchanged=len(matched) - len(changed_ids),
        changed_by_column=by_column,
        compared_columns=compared,
        uncompared_columns=uncompared,
        schema=SchemaDiff(
            added=[ColumnChange(n, None, str(t)) for n, t in new_types.items() if n not in old_types],
            removed=[ColumnChange(n, str(t), None) for n, t in old_types.items() if n not in new_types],
            retyped=[
                ColumnChange(n, str(old_types[n]), str(new_types[n]))
                for n in common
                if old_types[n] != new_types[n]
            ],
        ),
        row_count=Delta("rows", old_ds.count_rows(), new_ds.count_rows()),
        null_counts=nulls,
        means=[Delta(n, old_means.get(n), new_means.get(n)) for n in old_means]
        + [Delta(n, None, v) for n, v in new_means.items() if n not in old_means],
        changed_rows=[],
    )


@dataclass(frozen=True)
class Version:
    """A version of a plain Lance dataset, as `diff_versions` reads one."""

    uri: str
    version: int

    @property
    def ref(self) -> str:
        return f"plain@{self.version}"

    def to_lance(self) -> lance.LanceDataset:
        return lance.dataset(self.uri, version=self.version)


def rows(ids: range, answer: str = "A", rng_seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(rng_seed)
    n = len(ids)
    reward = rng.random(n)
    reward[::17] = np.nan
    return pa.table(
        {
            "id": [f"r{i:04d}" for i in ids],
            "language": pa.array([["en", "fr", "de"][i % 3] for i in ids]).dictionary_encode(),
            "messages": pa.array(
                [
                    [
                        {"role": "user", "content": f"q{i} ünï"},
                        {"role": "assistant", "content": f"{answer}{i}"},
                    ]
                    for i in ids
                ],
                MESSAGES_TYPE,
            ),
            "scores": pa.array([{"best": float(r), "n": i} for r, i in zip(rng.random(n), ids, strict=True)]),
            "reward": pa.array(reward, mask=np.arange(n) % 23 == 5),
        }
    )


def assert_same(got: DatasetDiff, want: DatasetDiff) -> None:
    """Equal in everything; means equal but for the last bits (the order the floats add up in
    depends on how Lance split the column in batches)."""
    assert {**got.__dict__, "changed_rows": [], "means": []} == {**want.__dict__, "means": []}
    assert [d.name for d in got.means] == [d.name for d in want.means]
    for mine, theirs in zip(got.means, want.means, strict=True):
        for a, b in ((mine.old, theirs.old), (mine.new, theirs.new)):
            assert (a is None and b is None) or a == pytest.approx(b, rel=1e-12, abs=1e-15)


@pytest.fixture
def versions(tmp_path: Path) -> list[Version]:
    """Seven versions of one Lance dataset: write (3 fragments), append, delete, update, append
    after an overwrite of half the rows, a retype-free overwrite shuffled, an empty overwrite."""
    uri = str(tmp_path / "plain.lance")
    ds = lance.write_dataset(rows(range(300)), uri, max_rows_per_file=100)
    ds = lance.write_dataset(rows(range(300, 360)), uri, mode="append")
    ds.delete("id >= 'r0050' AND id < 'r0070' OR id = 'r0310'")  # deletion files in 2 fragments
    ds.update({"reward": "0.5"}, where="id >= 'r0120' AND id < 'r0130'")  # rows move to a new fragment
    ds = lance.write_dataset(rows(range(150, 400), answer="B", rng_seed=1), uri, mode="overwrite")
    ds = lance.write_dataset(rows(range(400, 420)), uri, mode="append")
    shuffled = rows(range(100, 420), rng_seed=1)
    ds = lance.write_dataset(
        shuffled.take(np.random.default_rng(3).permutation(shuffled.num_rows)), uri, mode="overwrite"
    )
    lance.write_dataset(rows(range(0)), uri, mode="overwrite")
    return [Version(uri, v["version"]) for v in lance.dataset(uri).versions()]


def test_every_pair_of_versions_diffs_as_reading_them_whole(versions: list[Version]) -> None:
    shared = DigestCache()
    for old, new in itertools.permutations(versions, 2):
        want = reference_diff(old, new)
        assert_same(diff_versions(old, new), want)
        assert_same(diff_versions(old, new, digests=shared), want)  # digests kept from earlier pairs


def test_changed_rows_are_the_offsets_of_the_sampled_ids(versions: list[Version]) -> None:
    old, new = versions[0], versions[4]
    diff = diff_versions(old, new, sample=4)
    assert diff.changed.count > 4 and len(diff.changed_rows) == 4
    old_ids = old.to_lance().take([o for o, _ in diff.changed_rows], columns=["id"]).column(0).to_pylist()
    new_ids = new.to_lance().take([n for _, n in diff.changed_rows], columns=["id"]).column(0).to_pylist()
    assert old_ids == new_ids == diff.changed.sample


def test_a_fragment_two_versions_share_is_read_once(versions: list[Version]) -> None:
    written, appended = versions[0], versions[1]  # 3 fragments of 100 rows, then 60 rows more
    cache = DigestCache()
    diff_versions(written, appended, digests=cache)
    assert (cache.fragments_read, cache.rows_read) == (4, 360)
    cache.version(appended.to_lance())
    assert cache.fragments_read == 4  # kept: nothing read again
    bounded = DigestCache(max_rows=100)
    diff_versions(written, appended, digests=bounded)
    assert 0 < bounded.rows_kept <= 100


def test_registry_versions_and_unicode_ids_agree_with_the_reference(registry: Registry) -> None:
    ids = ["é", "e", "Z", "ä", "a", "日本", "b", "10", "9"]
    old = registry.write("u", pa.table({"id": ids, "x": list(range(9))}))
    new = registry.write("u", pa.table({"id": ids[2:] + ["ß"], "x": [0, 1, 2, 3, 4, 5, 0, 9]}))
    for sample in (0, 2, 20):
        assert_same(diff_versions(old, new, sample=sample), reference_diff(old, new, sample=sample))


def test_ids_with_equal_hashes_are_matched_by_the_ids_themselves() -> None:
    """Different ids whose hashes collide (forced here) are not taken for the same row."""

    def version(ids: list[str], hashes: list[int]) -> VersionDigest:
        id_hashes = np.array(hashes, dtype=np.uint64)
        order = np.argsort(id_hashes, kind="stable")
        digest = Digest(len(ids), pl.Series(ids, dtype=pl.String), id_hashes, order, 0, {}, {})
        unique = len(set(hashes)) == len(hashes)
        return VersionDigest(digest, id_hashes[order], digest.ids.gather(order), {}, unique, {})

    def matched(old: VersionDigest, new: VersionDigest) -> tuple[list[str], list[str], list[str]]:
        both_old, both_new, added, removed = _match(old, new)
        assert old.sorted_ids.gather(both_old).to_list() == new.sorted_ids.gather(both_new).to_list()
        ids = old.sorted_ids.gather(both_old).to_list()
        return sorted(ids), new.sorted_ids.gather(added).to_list(), old.sorted_ids.gather(removed).to_list()

    # "x" (new) collides with "b" (old)
    assert matched(version(["a", "b", "c"], [1, 2, 3]), version(["c", "x", "a"], [3, 2, 1])) == (
        ["a", "c"],
        ["x"],
        ["b"],
    )
    # two ids of one version collide with each other
    assert matched(version(["a", "b"], [7, 7]), version(["b"], [7])) == (["b"], [], ["a"])
