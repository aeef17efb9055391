"""Registry: write, read, versions, lineage, kinds, and clear errors that change nothing."""

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from datasets_registry import Lineage, Registry, RegistryError
from datasets_registry.kinds import MESSAGES_TYPE


def sft_table(texts: list[str]) -> pa.Table:
    messages = [[{"role": "user", "content": "q"}, {"role": "assistant", "content": t}] for t in texts]
    return pa.table(
        {"id": [f"r{i}" for i in range(len(texts))], "messages": pa.array(messages, MESSAGES_TYPE)}
    )


def test_write_then_read_back_with_lineage(registry: Registry) -> None:
    lineage = Lineage(job_id="job-1", pipeline="p", models=["m#abc"], sources=["file:x#sha256=00"])
    version = registry.write("demo-sft", sft_table(["a", "b"]), kind="sft", lineage=lineage)
    assert version.ref == "demo-sft@1"
    opened = registry.open("demo-sft@1")
    assert opened.to_arrow().equals(sft_table(["a", "b"]))
    assert opened.info.kind == "sft"
    assert opened.info.job_id == "job-1"
    assert opened.info.lineage.models == ["m#abc"]
    assert opened.info.lineage.sources == ["file:x#sha256=00"]
    assert registry.open("demo-sft").version == 1
    assert registry.open("demo-sft@latest").version == 1


def test_overwrite_makes_a_new_version_and_old_versions_stay_readable(registry: Registry) -> None:
    registry.write("d", pa.table({"x": [1, 2, 3]}))
    second = registry.write("d", pa.table({"x": [9]}))
    third = registry.write("d", pa.table({"x": [10]}), mode="append")
    assert [v.version for v in registry.versions("d")] == [1, 2, 3]
    assert registry.open("d@1").to_arrow()["x"].to_pylist() == [1, 2, 3]
    assert second.to_arrow()["x"].to_pylist() == [9]
    assert third.to_arrow()["x"].to_pylist() == [9, 10]
    assert registry.open("d").num_rows == 2
    assert registry.open("d@2").to_polars()["x"].to_list() == [9]
    assert registry.open("d@1").head(2).num_rows == 2


def test_unknown_name_version_or_tag_lists_what_exists(registry: Registry) -> None:
    registry.write("alpha", pa.table({"x": [1]}))
    with pytest.raises(RegistryError, match=r"no dataset named 'beta'.*datasets: alpha"):
        registry.open("beta")
    with pytest.raises(RegistryError, match=r"no version 7; versions: 1"):
        registry.open("alpha@7")
    with pytest.raises(RegistryError, match=r"no tag 'gold'; tags: none"):
        registry.open("alpha@gold")
    with pytest.raises(RegistryError, match="invalid dataset name"):
        registry.open("Bad Name")
    assert registry.names() == ["alpha"]


def test_write_refused_for_wrong_kind_commits_nothing(registry: Registry) -> None:
    with pytest.raises(RegistryError, match=r"kind 'preference' lacks column\(s\) prompt, chosen, rejected"):
        registry.write("prefs", pa.table({"x": [1]}), kind="preference")
    with pytest.raises(RegistryError, match="unknown dataset kind"):
        registry.write("prefs", pa.table({"x": [1]}), kind="nonsense")
    assert registry.names() == []


def test_write_ray_dataset_including_empty(registry: Registry, ray_local: None) -> None:
    import ray.data

    version = registry.write("from-ray", ray.data.from_arrow(pa.table({"x": list(range(100))})))
    assert sorted(version.to_arrow()["x"].to_pylist()) == list(range(100))
    empty = ray.data.from_arrow(pa.table({"x": pa.array([], pa.int64())}))
    version = registry.write("from-ray", empty)
    assert version.version == 2 and version.num_rows == 0
    assert version.schema.names == ["x"]
    assert sorted(version.to_ray().take_all(), key=lambda r: r["x"]) == []
    assert len(registry.open("from-ray@1").to_ray().take_all()) == 100


def test_registry_reopened_from_disk_sees_everything(registry: Registry) -> None:
    registry.write("d", pa.table({"x": [1]}), lineage=Lineage(job_id="j"))
    again = Registry(registry.root)
    assert again.names() == ["d"]
    assert again.open("d@1").info.job_id == "j"


def test_tags_point_at_versions_and_move_only_when_asked(registry: Registry) -> None:
    for x in (1, 2, 3):
        registry.write("d", pa.table({"x": [x]}))
    registry.tag("d@2", "gold")
    assert registry.tags("d") == {"gold": 2}
    assert registry.open("d@gold").to_arrow()["x"].to_pylist() == [2]
    with pytest.raises(RegistryError, match="already points to d@2"):
        registry.tag("d@3", "gold")
    registry.tag("d@3", "gold", move=True)
    assert registry.open("d@gold").version == 3
    for bad in ("7", "latest", "Has Space"):
        with pytest.raises(RegistryError, match="invalid tag"):
            registry.tag("d@1", bad)
    with pytest.raises(RegistryError, match="no version 9"):
        registry.tag("d@9", "silver")
    registry.untag("d", "gold")
    assert registry.tags("d") == {}
    with pytest.raises(RegistryError, match="no tag 'gold'"):
        registry.untag("d", "gold")


def test_sample_filters_and_is_reproducible(registry: Registry) -> None:
    table = pa.table({"id": [str(i) for i in range(100)], "language": ["fr", "en"] * 50})
    version = registry.write("langs", table)
    first = version.sample(10, where="language = 'fr'", seed=3).to_pylist()
    assert len(first) == 10 and {row["language"] for row in first} == {"fr"}
    assert version.sample(10, where="language = 'fr'", seed=3).to_pylist() == first
    assert version.sample(500, where="language = 'en'").num_rows == 50
    with pytest.raises(RegistryError, match="cannot read with filter"):
        version.sample(1, where="no_such_column = 1")


def test_append_refuses_a_different_schema(registry: Registry) -> None:
    registry.write("d", pa.table({"x": [1]}), mode="append")
    with pytest.raises(RegistryError, match="cannot append to 'd': its schema is"):
        registry.write("d", pa.table({"y": [1]}), mode="append")
    assert registry.open("d").to_arrow()["x"].to_pylist() == [1]


def test_gc_keeps_latest_tagged_and_referenced_versions(registry: Registry) -> None:
    for x in range(5):
        registry.write("d", pa.table({"x": [x]}))
    registry.tag("d@2", "gold")
    registry.write("child", pa.table({"y": [1]}), lineage=Lineage(sources=["d@3"]))
    planned = [(i.name, i.version) for i in registry.gc(dry_run=True)]
    assert planned == [("d", 1), ("d", 4)]
    assert [v.version for v in registry.versions("d")] == [1, 2, 3, 4, 5]  # dry run changed nothing
    assert [i.version for i in registry.gc({"d@1"}, dry_run=True)] == [4]  # e.g. a model's lineage
    removed = [(i.name, i.version) for i in registry.gc()]
    assert removed == planned
    assert [v.version for v in registry.versions("d")] == [2, 3, 5]
    assert registry.open("d@gold").to_arrow()["x"].to_pylist() == [1]
    assert registry.open("d@3").to_arrow()["x"].to_pylist() == [2]
    with pytest.raises(RegistryError, match="no version 1"):
        registry.open("d@1")
    import lance

    assert 1 not in [v["version"] for v in lance.dataset(registry.dataset_uri("d")).versions()]


def test_lineage_graph_walks_back_to_files(registry: Registry) -> None:
    from datasets_registry.lineage import lineage_graph

    registry.write("raw", pa.table({"x": [1]}), lineage=Lineage(sources=["file:/data/raw.jsonl#sha256=ab"]))
    registry.write("clean", pa.table({"x": [1]}), lineage=Lineage(job_id="j2", sources=["raw@1"]))
    registry.write("mix", pa.table({"x": [1]}), lineage=Lineage(sources=["clean@1", "gone@4"]))

    def lookup(ref: str) -> Lineage | None:
        try:
            return registry.open(ref).info.lineage
        except RegistryError:
            return None

    graph = lineage_graph("mix@1", lookup)
    assert [p.ref for p in graph.parents] == ["clean@1", "gone@4"]
    clean, gone = graph.parents
    assert clean.lineage is not None and clean.lineage.job_id == "j2"
    assert gone.lineage is None
    assert clean.parents[0].ref == "raw@1"
    assert clean.parents[0].files == ["file:/data/raw.jsonl#sha256=ab"]


@pytest.fixture
def new_york_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time 4 or 5 hours behind UTC, as on a machine in New York."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_gc_spares_a_fresh_unregistered_version_west_of_utc(registry: Registry, new_york_time: None) -> None:
    import lance

    registry.write("d", pa.table({"x": [1]}))
    uri = registry.dataset_uri("d")
    in_flight = lance.write_dataset(pa.table({"x": [2]}), uri, mode="append").version  # not registered yet
    registry.write("d", pa.table({"x": [3]}))
    registry.gc()
    assert in_flight in [v["version"] for v in lance.dataset(uri).versions()]


def test_append_leaves_out_the_rows_of_a_writer_that_died_before_registering(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lance

    from datasets_registry import registry as registry_module

    registry.write("d", pa.table({"x": [1, 2]}))
    uri = registry.dataset_uri("d")
    lance.write_dataset(pa.table({"x": [99]}), uri, mode="append")  # committed, never registered
    monkeypatch.setattr(registry_module, "UNREGISTERED_GRACE", timedelta(0))
    appended = registry.write("d", pa.table({"x": [3]}), mode="append")
    assert appended.to_arrow()["x"].to_pylist() == [1, 2, 3] and appended.num_rows == 3
    # A dead writer of a name that has no registered version at all.
    lance.write_dataset(pa.table({"y": [99]}), registry.dataset_uri("e"))
    appended = registry.write("e", pa.table({"x": [1]}), mode="append")
    assert appended.to_arrow()["x"].to_pylist() == [1]


def test_append_builds_on_an_unregistered_version_still_in_flight(registry: Registry) -> None:
    import lance

    registry.write("d", pa.table({"x": [1]}))
    lance.write_dataset(pa.table({"x": [2]}), registry.dataset_uri("d"), mode="append")  # about to register
    appended = registry.write("d", pa.table({"x": [3]}), mode="append")
    assert appended.to_arrow()["x"].to_pylist() == [1, 2, 3]


def test_reading_a_registry_that_does_not_exist_creates_nothing(tmp_path: Path) -> None:
    root = tmp_path / "mistyped"
    registry = Registry(root)
    assert registry.names() == []
    with pytest.raises(RegistryError, match="no dataset named 'd'"):
        registry.open("d")
    assert not root.exists()
    registry.write("d", pa.table({"x": [1]}))
    assert Registry(root).open("d").num_rows == 1


def test_read_errors_name_the_filter_only_when_there_is_one(registry: Registry) -> None:
    version = registry.write("d", pa.table({"x": [1]}))
    with pytest.raises(RegistryError, match=r"d@1: cannot read: ") as error:
        version.to_arrow(columns=["no_such_column"])
    assert "filter" not in str(error.value)


def test_sample_draws_distinct_rows_reading_only_offsets(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datasets_registry import DatasetVersion

    version = registry.write(
        "d", pa.table({"x": list(range(1000)), "even": [i % 2 == 0 for i in range(1000)]})
    )

    def no_full_read(*args: object, **kwargs: object) -> pa.Table:
        raise AssertionError("sample read the whole table")

    monkeypatch.setattr(DatasetVersion, "to_arrow", no_full_read)
    drawn = version.sample(20, seed=1)["x"].to_pylist()
    assert len(set(drawn)) == 20 and drawn == version.sample(20, seed=1)["x"].to_pylist()
    assert drawn != version.sample(20, seed=2)["x"].to_pylist()
    evens = version.sample(30, where="even", seed=1)["x"].to_pylist()
    assert len(set(evens)) == 30 and all(x % 2 == 0 for x in evens)
    assert sorted(version.sample(2000)["x"].to_pylist()) == list(range(1000))
    for n in (0, -1):
        with pytest.raises(RegistryError, match=f"cannot sample {n} rows"):
            version.sample(n)
