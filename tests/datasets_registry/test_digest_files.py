"""Digests stored at commit (`datasets_registry.digest_files`): a reader that never saw a version
diffs it from the stored digests, with the same result as reading content and without reading
it; appends store only their new fragment; deletions, corrupt or missing files and failed digest
writes fall back or carry on; gc removes the digests of fragments no version holds."""

from __future__ import annotations

import logging
from pathlib import Path

import lance
import pyarrow as pa
import pytest
from s3_server import S3Server
from test_diff_digests import Version, assert_same, reference_diff, rows

from datasets_registry import Registry
from datasets_registry.diff import diff_versions
from datasets_registry.digest_files import DIGEST_DIR, digest_name
from datasets_registry.digests import DigestCache


def digest_files(uri: str) -> dict[str, bytes]:
    folder = Path(uri) / DIGEST_DIR
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.exists() else {}


def corrupt_data_files(uri: str) -> None:
    """Overwrite every data file with garbage of the same size: content reads now fail."""
    for data_file in (Path(uri) / "data").iterdir():
        data_file.write_bytes(b"\xde\xad" * (data_file.stat().st_size // 2))


@pytest.fixture
def written(registry: Registry) -> list[Version]:
    """v1 (300 rows), v2 an overwrite (half the rows changed, some removed, some added), v3 an
    append of 40 rows, all through the registry."""
    registry.write("d", rows(range(300)))
    registry.write("d", rows(range(150, 400), answer="B", rng_seed=1))
    registry.write("d", rows(range(400, 440)), mode="append")
    return [Version(registry.dataset_uri("d"), v) for v in (1, 2, 3)]


def test_a_fresh_cache_diffs_from_stored_digests_without_reading_content(written: list[Version]) -> None:
    uri = written[0].uri
    fragments = {v.version: v.to_lance().get_fragments() for v in written}
    assert set(digest_files(uri)) == {digest_name(f.metadata) for fs in fragments.values() for f in fs}
    pairs = [(written[0], written[1]), (written[1], written[2]), (written[2], written[0])]
    want = [reference_diff(old, new) for old, new in pairs]
    from_content = [diff_versions(old, new, digests=DigestCache(stored=False)) for old, new in pairs]
    corrupt_data_files(uri)
    with pytest.raises((OSError, ValueError)):
        written[1].to_lance().to_table()  # the content is unreadable now
    for (old, new), expected, computed in zip(pairs, want, from_content, strict=True):
        cache = DigestCache()
        got = diff_versions(old, new, digests=cache)
        assert_same(got, expected)
        assert got == computed  # the same to the last bit as digests computed from content
        assert cache.fragments_read == 0
        distinct = {digest_name(f.metadata) for v in (old, new) for f in fragments[v.version]}
        assert cache.fragments_loaded == len(distinct)  # a fragment both hold: loaded once


def test_an_append_stores_the_digest_of_its_new_fragment_only(registry: Registry) -> None:
    registry.write("d", rows(range(100)))
    uri = registry.dataset_uri("d")
    before = digest_files(uri)
    registry.write("d", rows(range(100, 130)), mode="append")
    after = digest_files(uri)
    new = [f for f in lance.dataset(uri).get_fragments() if digest_name(f.metadata) not in before]
    assert len(before) == 1 and len(new) == 1 and new[0].count_rows() == 30
    assert after == {**before, digest_name(new[0].metadata): after[digest_name(new[0].metadata)]}


def test_rows_deleted_later_are_dropped_from_the_stored_digest(
    registry: Registry, written: list[Version]
) -> None:
    uri = written[0].uri
    dataset = lance.dataset(uri)
    dataset.delete("id >= 'r0200' AND id < 'r0230' OR id = 'r0410'")  # a deletion file in each
    deleted = Version(uri, lance.dataset(uri).version)
    assert all(f.metadata.deletion_file is not None for f in deleted.to_lance().get_fragments())
    one = Version(registry.dataset_uri("one"), registry.write("one", rows(range(150, 400))).version)
    lance.dataset(one.uri).delete("id < 'r0170' OR id = 'r0333'")  # a version of one fragment
    one_deleted = Version(one.uri, one.version + 1)
    for old, new in [(w, deleted) for w in written] + [(one, one_deleted), (one_deleted, written[1])]:
        cache = DigestCache()
        assert_same(diff_versions(old, new, digests=cache), reference_diff(old, new))
        assert cache.fragments_read == 0


def test_a_corrupt_missing_or_mismatched_digest_falls_back_to_content(written: list[Version]) -> None:
    old, new = written[1], written[2]  # 2 fragments: the overwrite's and the append's
    first, appended = (digest_name(f.metadata) for f in new.to_lance().get_fragments())
    want = reference_diff(old, new)
    folder = Path(old.uri) / DIGEST_DIR
    for damage in ("truncate", "delete", "swap"):
        saved = {name: (folder / name).read_bytes() for name in (first, appended)}
        if damage == "truncate":
            (folder / first).write_bytes(saved[first][: len(saved[first]) // 2])
        elif damage == "delete":
            (folder / first).unlink()
        else:  # another fragment's digest under this fragment's name: made for other data files
            (folder / first).write_bytes(saved[appended])
        cache = DigestCache()
        assert_same(diff_versions(old, new, digests=cache), want)
        # The damaged fragment is read once (then kept for the new version), the other loaded.
        assert (cache.fragments_read, cache.fragments_loaded) == (1, 1), damage
        for name, content in saved.items():
            (folder / name).write_bytes(content)


def test_gc_removes_the_digests_of_fragments_no_version_holds(registry: Registry) -> None:
    registry.write("d", rows(range(100)))
    uri = registry.dataset_uri("d")
    (first,) = digest_files(uri)
    registry.write("d", rows(range(50, 150)))
    registry.write("d", rows(range(150, 160)), mode="append")
    kept = set(digest_files(uri)) - {first}
    assert len(kept) == 2
    assert [v.version for v in registry.gc(dry_run=True)] == [1, 2] and first in digest_files(uri)
    assert [v.version for v in registry.gc()] == [1, 2]
    assert set(digest_files(uri)) == kept  # v2 is gone, but v3 still holds its fragment
    cache = DigestCache()
    cache.version(registry.open("d").to_lance())
    assert (cache.fragments_read, cache.fragments_loaded) == (0, 2)


def test_a_failing_digest_write_does_not_fail_the_write(
    registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    first = registry.write("d", rows(range(100)))
    folder = Path(first.uri) / DIGEST_DIR
    for stored in folder.iterdir():
        stored.unlink()
    folder.rmdir()
    folder.write_text("a file where the digest folder goes: every digest write fails")
    with caplog.at_level(logging.WARNING, logger="datasets_registry.digest_files"):
        appended = registry.write("d", rows(range(100, 120)), mode="append")
    assert appended.num_rows == 120 and registry.open("d").version == appended.version
    assert len([r for r in caplog.records if "could not store the digests" in r.message]) == 1
    cache = DigestCache()
    assert_same(diff_versions(first, appended, digests=cache), reference_diff(first, appended))
    assert (cache.fragments_read, cache.fragments_loaded) == (2, 0)


def test_no_digests_without_an_id_column_or_when_turned_off(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "on")
    registry.write("plain", pa.table({"x": [1, 2, 3]}))
    assert digest_files(registry.dataset_uri("plain")) == {}
    off = Registry(tmp_path / "off", write_digests=False)
    off.write("d", rows(range(10)))
    assert digest_files(off.dataset_uri("d")) == {}


@pytest.mark.usefixtures("ray_local")
def test_a_ray_write_stores_the_digests_of_its_fragments(registry: Registry) -> None:
    import ray.data

    table = rows(range(200)).cast(rows(range(1)).schema)
    version = registry.write("d", ray.data.from_arrow([table.slice(0, 120), table.slice(120)]))
    fragments = version.to_lance().get_fragments()
    assert set(digest_files(version.uri)) == {digest_name(f.metadata) for f in fragments}
    cache = DigestCache()
    cache.version(version.to_lance())
    assert (cache.fragments_read, cache.fragments_loaded) == (0, len(fragments))


def test_digests_are_stored_loaded_and_collected_on_an_object_store(
    s3_root: str, s3_server: S3Server
) -> None:
    registry = Registry(s3_root)
    old = registry.write("d", rows(range(100)))
    registry.write("d", rows(range(50, 150), answer="B"))
    new = registry.write("d", rows(range(150, 170)), mode="append")
    bucket, _, prefix = s3_root.removeprefix("s3://").partition("/")
    folder = f"{prefix}/datasets/d.lance/{DIGEST_DIR}/"

    def stored_digests() -> set[str]:  # not the folder marker pyarrow leaves when deleting
        return {key.removeprefix(folder) for key in s3_server.keys(bucket, folder) if key != folder}

    stored = stored_digests()
    assert len(stored) == 3
    cache = DigestCache()
    assert cache.ready(new.to_lance())
    assert_same(diff_versions(old, new, digests=cache), reference_diff(old, new))
    assert (cache.fragments_read, cache.fragments_loaded) == (0, 3)
    (first,) = [f.metadata for f in old.to_lance().get_fragments()]
    assert [v.version for v in registry.gc()] == [1, 2]
    assert stored_digests() == stored - {digest_name(first)}
