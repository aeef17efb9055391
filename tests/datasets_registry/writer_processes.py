"""Registry writers in processes of their own, for the concurrency and crash tests on a local
disk (test_concurrency.py) and on S3 (test_object_store.py)."""

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil

from datasets_registry import Registry

ROOT = Path(__file__).resolve().parents[2]

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


def python(code: str, *args: str) -> subprocess.Popen:
    """A Python process running `code` (it inherits the environment, e.g. AWS_* variables)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, so a kill reaches what it started
    )


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL a process, its group and every process it started (Ray workers put themselves in
    process groups of their own), as a crash would."""
    descendants = psutil.Process(process.pid).children(recursive=True)
    os.killpg(process.pid, signal.SIGKILL)
    for child in descendants:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    process.wait(timeout=30)


def check_racing_appenders_both_land(root: str, ready: Path) -> None:
    """Two processes append five times each to `shared` at once: all 1,000 rows land, once
    each, in ten versions of growing size."""
    ready.mkdir()
    writers = [python(APPENDER, root, name, str(ready)) for name in ("a", "b")]
    windows = []
    for writer in writers:
        out, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
        windows.append(tuple(map(float, out.split())))
    (a_start, a_end), (b_start, b_end) = windows
    assert max(a_start, b_start) < min(a_end, b_end), f"the appends did not overlap: {windows}"
    registry = Registry(root)
    ids = registry.open("shared").to_arrow()["id"].to_pylist()
    assert len(ids) == 1000 and len(set(ids)) == 1000
    assert {i.split("-")[0] for i in ids} == {"a", "b"}
    counts = [v.num_rows for v in registry.versions("shared")]
    assert len(counts) == 10 and counts == sorted(counts) and counts[-1] == 1000
