"""The registry, its job commit records and the LLM-call cache on an object store: a real
S3-compatible server (moto, tests/s3_server.py) on 127.0.0.1, reached by Lance over HTTP as it
reaches AWS S3, configured only by the AWS_* environment. The concurrency and crash tests
mirror test_concurrency.py with real processes."""

import hashlib
import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import lance
import pyarrow as pa
import pytest
from s3_server import S3Server
from writer_processes import check_racing_appenders_both_land, kill_tree, python

from datasets_registry import Lineage, Registry, RegistryError, storage
from datasets_registry.kinds import MESSAGES_TYPE
from datasets_registry.lineage import lineage_graph
from datasets_registry.transfer import export_version, import_file

ROOT = Path(__file__).resolve().parents[2]


def bucket_and_prefix(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return bucket, prefix


def sft_table(answers: list[str], languages: list[str]) -> pa.Table:
    messages = [[{"role": "user", "content": "q"}, {"role": "assistant", "content": a}] for a in answers]
    return pa.table(
        {
            "id": [f"r{i}" for i in range(len(answers))],
            "language": languages,
            "messages": pa.array(messages, MESSAGES_TYPE),
        }
    )


def test_registry_operations_on_s3(
    s3_root: str, s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a URI mistaken for a path would show up as a folder here
    registry = Registry(s3_root)
    assert registry.root == s3_root and registry.names() == []  # reading created nothing
    bucket, prefix = bucket_and_prefix(s3_root)
    assert s3_server.keys(bucket) == set()

    first = sft_table(["Salut", "4"], ["fr", "en"])
    v1 = registry.write("sft", first, kind="sft", lineage=Lineage(job_id="j1"))
    v2 = registry.write(
        "sft", sft_table(["Salut", "four"], ["fr", "en"]), kind="sft", lineage=Lineage(sources=["sft@1"])
    )
    appended = registry.write("sft", sft_table(["Hallo"], ["de"]), kind="sft", mode="append")
    assert (v1.ref, v2.ref, appended.ref, appended.num_rows) == ("sft@1", "sft@2", "sft@3", 3)
    assert appended.uri == f"{s3_root}/datasets/sft.lance"
    assert any(key.startswith(f"{prefix}/datasets/sft.lance/data/") for key in s3_server.keys(bucket))

    again = Registry(s3_root)  # another client sees everything from the store alone
    assert [v.version for v in again.versions("sft")] == [1, 2, 3]
    assert again.open("sft@1").to_arrow(filter="language = 'en'")["messages"][0].as_py()[1]["content"] == "4"
    assert again.open("sft").sample(1, where="language = 'de'")["id"].to_pylist() == ["r0"]
    assert again.open("sft@3").size_bytes() > 0

    registry.tag("sft@1", "gold")
    registry.tag("sft@2", "gold", move=True)
    registry.tag("sft@3", "old")
    registry.untag("sft", "old")
    assert registry.tags("sft") == {"gold": 2} and registry.open("sft@gold").version == 2
    with pytest.raises(RegistryError, match="no version 7; versions: 1, 2, 3"):
        registry.open("sft@7")

    assert registry.open("sft@3").stats().languages == {"fr": 1, "en": 1, "de": 1}
    diff = registry.diff("sft@1", "sft@2")
    assert (diff.added.count, diff.removed.count, diff.changed.count) == (0, 0, 1)
    graph = lineage_graph("sft@2", lambda ref: registry.open(ref).info.lineage)
    assert [parent.ref for parent in graph.parents] == ["sft@1"]

    export_version(registry.open("sft@3"), "jsonl", tmp_path / "out" / "sft.jsonl")
    export_version(registry.open("sft@3"), "parquet", tmp_path / "out" / "sft.parquet")
    imported = import_file(registry, tmp_path / "out" / "sft.jsonl", "sft-copy", "sft")
    assert imported.num_rows == 3 and imported.uri.startswith("s3://")

    # @1 is in sft@2's lineage, @2 is tagged, @3 is the latest: nothing to remove; then @2 is.
    assert registry.gc(dry_run=True) == []
    registry.untag("sft", "gold")
    registry.write("other", pa.table({"x": [1]}))  # drops sft@1 from every lineage but sft@2's
    removed = registry.gc()
    assert [f"{info.name}@{info.version}" for info in removed] == ["sft@2"]
    assert [v.version for v in registry.versions("sft")] == [1, 3]
    assert 2 not in [v["version"] for v in lance.dataset(registry.dataset_uri("sft")).versions()]
    assert registry.open("sft@1").num_rows == 2 and registry.open("sft@3").num_rows == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing written locally
    client = s3_server.client()
    for key in s3_server.keys(bucket):  # credentials come from the environment, stored nowhere
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert os.environ["AWS_SECRET_ACCESS_KEY"].encode() not in body, key
        assert os.environ["AWS_ACCESS_KEY_ID"].encode() not in body, key


def test_job_outputs_land_together_on_s3(s3_root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = Registry(s3_root)
    registry.begin_job("job-1")
    registry.write("out-a", pa.table({"x": [1]}), lineage=Lineage(job_id="job-1"))
    registry.write("out-b", pa.table({"x": [2]}), lineage=Lineage(job_id="job-1"))
    assert Registry(s3_root).names() == []  # open job: neither output is visible
    registry.commit_job("job-1")
    assert Registry(s3_root).names() == ["out-a", "out-b"]

    registry.begin_job("job-2")  # it dies after its first output
    registry.write("out-a", pa.table({"x": [3]}), lineage=Lineage(job_id="job-2"))
    assert registry.open("out-a").to_arrow()["x"].to_pylist() == [1]
    from datasets_registry import registry as registry_module

    monkeypatch.setattr(registry_module, "UNREGISTERED_GRACE", timedelta(0))
    registry.gc()  # aborts the stale job and removes its version
    assert registry.catalog.jobs.latest()["job-2"][0] == "aborted"
    assert [v.version for v in registry.versions("out-a")] == [1]
    assert registry.write("out-a", pa.table({"x": [4]}), mode="append").to_arrow()["x"].to_pylist() == [1, 4]


def test_a_creation_that_lost_the_race_hides_no_rows(s3_root: str, s3_server: S3Server) -> None:
    """Two writers create one new dataset at once. The late one has found no dataset there when
    the other creates it and appends rows, before the late one commits (the object-store race
    that a local file lock rules out). The late creation must fail quietly, not land an empty
    version on top of those rows."""
    uri = Registry(s3_root).dataset_uri("new")
    schema = pa.schema([("x", pa.int64())])
    bucket, prefix = bucket_and_prefix(uri)

    ran = []

    def other_writer() -> None:
        storage.create_empty(uri, schema)
        lance.write_dataset(pa.table({"x": [1, 2]}), uri, mode="append")
        ran.append(True)

    # Lance's check that no dataset is there lists its versions: the other writer runs just then.
    s3_server.after_listing(bucket, f"{prefix}/_versions/", other_writer)
    storage.create_empty(uri, schema)
    assert ran == [True]
    dataset = lance.dataset(uri)
    assert (dataset.version, dataset.to_table()["x"].to_pylist()) == (2, [1, 2])


def test_two_processes_appending_at_once_on_s3_both_land(s3_root: str, tmp_path: Path) -> None:
    check_racing_appenders_both_land(s3_root, tmp_path / "ready")


# Stores its fragments, then hangs before the commit, where it is killed: a crash mid-write.
DIES_BEFORE_COMMITTING = """
import sys, time
import lance.fragment
import pyarrow as pa
from datasets_registry import Registry

write_fragments = lance.fragment.write_fragments

def write_then_hang(*args, **kwargs):
    write_fragments(*args, **kwargs)
    print("fragments stored", flush=True)
    time.sleep(600)

lance.fragment.write_fragments = write_then_hang
Registry(sys.argv[1]).write("victim", pa.table({"x": pa.array(range(1000), pa.int64())}), mode="append")
"""

# The same crash with the fragments written in Ray tasks, as a cluster's workers would write
# them (each reaching the store itself), slowly enough to be killed half-way.
SLOW_RAY_WRITER = """
import sys, time
import pyarrow as pa
import ray, ray.data
from datasets_registry import Registry
ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)

def slow_block(batch):
    time.sleep(0.3)
    return pa.table({"x": pa.array(range(1000), pa.int64())})

data = ray.data.range(40, override_num_blocks=40).map_batches(slow_block, batch_format="pyarrow")
Registry(sys.argv[1]).write("victim", data, mode="append")
"""


def check_killed_writer_left_previous_version(s3_root: str, s3_server: S3Server, writer_code: str) -> None:
    """Start `writer_code` appending to `victim`, kill it once it has stored fragments, and check
    that readers, gc and the next writer see only the previous version."""
    registry = Registry(s3_root)
    registry.write("victim", pa.table({"x": pa.array([1, 2, 3], pa.int64())}))
    bucket, prefix = bucket_and_prefix(registry.dataset_uri("victim"))
    files_before = s3_server.keys(bucket, f"{prefix}/data/")
    writer = python(writer_code, s3_root)
    deadline = time.time() + 120
    while s3_server.keys(bucket, f"{prefix}/data/") == files_before:  # until some fragments are in
        assert writer.poll() is None, writer.communicate()[1]
        assert time.time() < deadline, "the writer never started writing"
        time.sleep(0.05)
    kill_tree(writer)
    assert s3_server.keys(bucket, f"{prefix}/data/") != files_before  # died with fragments stored

    again = Registry(s3_root)
    assert [v.version for v in again.versions("victim")] == [1]
    assert lance.dataset(again.dataset_uri("victim")).version == 1  # nothing was committed
    assert again.open("victim").to_arrow()["x"].to_pylist() == [1, 2, 3]
    assert again.gc() == []  # nothing to remove, and the unreferenced fragments break nothing
    assert again.write("victim", pa.table({"x": pa.array([4], pa.int64())}), mode="append").version == 2
    assert again.open("victim@1").to_arrow()["x"].to_pylist() == [1, 2, 3]
    assert again.open("victim").to_arrow()["x"].to_pylist() == [1, 2, 3, 4]


def test_writer_killed_mid_write_on_s3_leaves_previous_version_intact(
    s3_root: str, s3_server: S3Server
) -> None:
    check_killed_writer_left_previous_version(s3_root, s3_server, DIES_BEFORE_COMMITTING)


@pytest.mark.slow  # 25-80 s on this shared machine: the writer starts a Ray of its own
def test_ray_writer_killed_mid_write_on_s3_leaves_previous_version_intact(
    s3_root: str, s3_server: S3Server
) -> None:
    check_killed_writer_left_previous_version(s3_root, s3_server, SLOW_RAY_WRITER)


# Commits its Lance version, then is killed before the catalog row that registers it.
DIES_BEFORE_REGISTERING = """
import sys, time
import pyarrow as pa
from datasets_registry import Registry, catalog

def hang(*args, **kwargs):
    print("committed", flush=True)
    time.sleep(600)

catalog.Catalog.append = hang
Registry(sys.argv[1]).write("victim", pa.table({"x": pa.array([99], pa.int64())}), mode="append")
"""


def test_writer_killed_before_registering_on_s3_is_cleaned_by_gc(
    s3_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = Registry(s3_root)
    registry.write("victim", pa.table({"x": pa.array([1, 2], pa.int64())}))
    registry.tag("victim@1", "keep")  # so that gc below removes only what the dead writer left
    writer = python(DIES_BEFORE_REGISTERING, s3_root)
    assert writer.stdout is not None and writer.stdout.readline() == "committed\n", writer.communicate()
    kill_tree(writer)
    uri = registry.dataset_uri("victim")
    assert lance.dataset(uri).version == 2  # its version is in Lance, registered nowhere
    assert [v.version for v in registry.versions("victim")] == [1]
    assert registry.open("victim").to_arrow()["x"].to_pylist() == [1, 2]

    from datasets_registry import registry as registry_module

    monkeypatch.setattr(registry_module, "UNREGISTERED_GRACE", timedelta(0))  # as if an hour passed
    appended = registry.write("victim", pa.table({"x": pa.array([3], pa.int64())}), mode="append")
    assert appended.to_arrow()["x"].to_pylist() == [1, 2, 3]  # the dead writer's row left out
    assert registry.gc() == []  # no registered version to remove; the orphan goes all the same
    assert 2 not in [v["version"] for v in lance.dataset(uri).versions()]
    assert [v.version for v in registry.versions("victim")] == [1, appended.version]


def test_uncommitted_fragments_are_deleted_from_s3(s3_root: str, s3_server: S3Server) -> None:
    """What a write refused after its fragments were stored (a bad Ray block) cleans up."""
    registry = Registry(s3_root)
    uri = registry.dataset_uri("d")
    bucket, prefix = bucket_and_prefix(uri)
    fragments = storage.write_table_fragments(pa.table({"x": [1, 2]}), uri, "overwrite")
    assert s3_server.keys(bucket, f"{prefix}/data/")
    storage.delete_fragment_files(uri, fragments)
    # pyarrow leaves an empty "folder" marker object (a key ending in /) in their place.
    assert {key for key in s3_server.keys(bucket, f"{prefix}/data/") if not key.endswith("/")} == set()


def test_a_missing_bucket_is_an_error_not_an_empty_registry(s3_root: str) -> None:
    registry = Registry("s3://no-such-bucket/registry")
    with pytest.raises(
        RegistryError, match="cannot read s3://no-such-bucket/registry/_catalog/versions.lance"
    ):
        registry.names()


def test_llm_call_cache_on_s3(s3_root: str, s3_server: S3Server) -> None:
    from datagen.cache import KEY_INDEX, CompletionCache
    from datagen.job import cache_uri

    uri = cache_uri(Registry(s3_root))
    assert uri == f"{s3_root}/_cache/llm_calls.lance"

    def completions(text: str) -> list[dict]:
        return [dict(text=text, model="m", temperature=0.7, finish_reason="stop", prompt_tokens=1,
                     completion_tokens=1, cached=False, latency_s=0.1)]  # fmt: skip

    keys = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(3)]
    cache = CompletionCache(uri, index_lag_rows=1)  # refresh its index at once: on the store too
    assert cache.get(keys) == {}  # no table yet
    cache.put({keys[0]: completions("first"), keys[1]: completions("b")})
    cache.put({keys[0]: completions("second"), keys[2]: completions("c")})
    got = CompletionCache(uri).get([*keys, "0" * 64])  # a fresh client, as a resumed job is
    assert {key: value[0]["text"] for key, value in got.items()} == {
        keys[0]: "first",
        keys[1]: "b",
        keys[2]: "c",
    }
    dataset = lance.dataset(uri)
    assert dataset.count_rows() == 3
    assert any(index.name == KEY_INDEX for index in dataset.describe_indices())
    bucket, prefix = bucket_and_prefix(uri)
    assert s3_server.keys(bucket, f"{prefix}/_versions/")


def test_cli_lists_and_shows_datasets_on_s3(s3_root: str) -> None:
    Registry(s3_root).write("sft", sft_table(["Salut", "4"], ["fr", "en"]), kind="sft")

    def assay(*args: str) -> str:
        command = [sys.executable, "-m", "assay", "--registry", s3_root, "data", *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert result.returncode == 0, result.stderr
        return result.stdout

    listing = json.loads(assay("list", "--json"))
    assert [(entry["name"], entry["rows"]) for entry in listing] == [("sft", 2)]
    shown = json.loads(assay("show", "sft@1", "--json"))
    assert shown["uri"] == f"{s3_root}/datasets/sft.lance" and shown["kind"] == "sft"
