"""Concurrency and crashes with real processes: racing appenders both land; a writer killed
mid-write leaves the previous version intact and readable."""

import time
from pathlib import Path

import pyarrow as pa
from writer_processes import check_racing_appenders_both_land, kill_tree, python

from datasets_registry import Registry

SLOW_WRITER = """
import sys, time
import pyarrow as pa
import ray, ray.data
from datasets_registry import Registry
ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)

def slow_block(batch):
    time.sleep(0.5)
    return pa.table({"x": pa.array(range(1000), pa.int64())})

data = ray.data.range(40, override_num_blocks=40).map_batches(slow_block, batch_format="pyarrow")
print("writing", flush=True)
Registry(sys.argv[1]).write("victim", data)
"""


def test_two_processes_appending_at_once_both_land(registry: Registry, tmp_path: Path) -> None:
    check_racing_appenders_both_land(registry.root, tmp_path / "ready")


def test_writer_killed_mid_write_leaves_previous_version_intact(registry: Registry) -> None:
    registry.write("victim", pa.table({"x": pa.array([1, 2, 3], pa.int64())}))
    data_dir = Path(registry.dataset_uri("victim")) / "data"
    files_before = set(data_dir.iterdir())
    writer = python(SLOW_WRITER, registry.root)
    deadline = time.time() + 120
    while set(data_dir.iterdir()) == files_before:  # wait until it has written some fragments
        assert writer.poll() is None, writer.communicate()[1]
        assert time.time() < deadline, "the writer never started writing"
        time.sleep(0.1)
    kill_tree(writer)  # the writer and every Ray process it started, as a crash would
    assert set(data_dir.iterdir()) != files_before  # it died with fragments on disk, uncommitted

    again = Registry(registry.root)
    assert [v.version for v in again.versions("victim")] == [1]
    assert again.open("victim").to_arrow()["x"].to_pylist() == [1, 2, 3]
    assert again.write("victim", pa.table({"x": pa.array([4], pa.int64())})).version == 2
    assert again.open("victim@1").to_arrow()["x"].to_pylist() == [1, 2, 3]
