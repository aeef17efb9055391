"""Concurrency and crashes with real processes: racing appenders both land; a writer killed
mid-write leaves the previous version intact and readable."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pyarrow as pa

from datasets_registry import Registry

# Both writers start together (each waits, after its imports, until both are ready) and print
# the wall-clock window of their five appends, so the test can check the writes really raced.
APPENDER = """
import os, sys, time
import pyarrow as pa
from datasets_registry import Registry
root, writer, ready = sys.argv[1], sys.argv[2], sys.argv[3]
registry = Registry(root)
open(os.path.join(ready, writer), "w").close()
deadline = time.time() + 60
while len(os.listdir(ready)) < 2:
    assert time.time() < deadline, "the other writer never got ready"
    time.sleep(0.002)
started = time.time()
for i in range(5):
    rows = [f"{writer}-{i}-{j}" for j in range(100)]
    registry.write("shared", pa.table({"id": rows}), mode="append")
print(started, time.time())
"""

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


def python(code: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, so a kill reaches what it started
    )


def test_two_processes_appending_at_once_both_land(registry: Registry, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    ready.mkdir()
    writers = [python(APPENDER, registry.root, name, str(ready)) for name in ("a", "b")]
    windows = []
    for writer in writers:
        out, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
        windows.append(tuple(map(float, out.split())))
    (a_start, a_end), (b_start, b_end) = windows
    assert max(a_start, b_start) < min(a_end, b_end), f"the appends did not overlap: {windows}"
    latest = registry.open("shared")
    ids = latest.to_arrow()["id"].to_pylist()
    assert len(ids) == 1000 and len(set(ids)) == 1000
    assert {i.split("-")[0] for i in ids} == {"a", "b"}
    assert len(registry.versions("shared")) == 10
    counts = [v.num_rows for v in registry.versions("shared")]
    assert counts == sorted(counts) and counts[-1] == 1000


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
    # Kill the writer and every Ray process it started, as a crash would. Ray workers put
    # themselves in process groups of their own, so the group kill alone does not reach them.
    descendants = psutil.Process(writer.pid).children(recursive=True)
    os.killpg(writer.pid, signal.SIGKILL)
    for process in descendants:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    writer.wait(timeout=30)
    assert set(data_dir.iterdir()) != files_before  # it died with fragments on disk, uncommitted

    again = Registry(registry.root)
    assert [v.version for v in again.versions("victim")] == [1]
    assert again.open("victim").to_arrow()["x"].to_pylist() == [1, 2, 3]
    assert again.write("victim", pa.table({"x": pa.array([4], pa.int64())})).version == 2
    assert again.open("victim@1").to_arrow()["x"].to_pylist() == [1, 2, 3]
