"""The same hostile programs against the bubblewrap fallback (where bwrap works here).

bwrap has no cgroups, so the memory test uses the address-space limit only; everything else must
hold as in Docker. Each test has a time bound and ends with a host check: no process of the
jails' sandbox uids left, the pool's jails all alive.
"""

import json
import time
from collections.abc import Iterator

import pytest
import resources
from test_isolation import (
    FORK_BOMBS,
    FS_PROBE,
    LIST_PROCESSES,
    NETWORK_PROBE,
    PLANT,
    PRIVILEGE_PROBE,
    SNOOP,
    SNOOPED_NOTHING,
    SURVIVORS,
    assert_all_planted,
    docker0_ip,
    fork_bomb_peak,
    host_http_server,  # noqa: F401 - a fixture
    python,
)
from timing import bound

from sandbox.execution import ExecRequest, Limits, Step
from sandbox.validation import InvalidRequest


@pytest.fixture(scope="module")
def bwrap_sandbox() -> Iterator:
    """A bwrap sandbox with one jail, so consecutive requests share it; skips (or fails under
    ASSAY_REQUIRE=bwrap) when bwrap cannot run."""
    import shutil

    from sandbox.bwrap_backend import BwrapSandbox
    from sandbox.config import SandboxConfig
    from sandbox.errors import SandboxError

    if shutil.which("bwrap") is None:
        resources.unavailable("bwrap", "bubblewrap is not installed (apt-get install bubblewrap)")
    try:
        sandbox = BwrapSandbox(SandboxConfig(backend="bwrap", pool_size=1))
    except SandboxError as err:
        resources.unavailable("bwrap", f"bwrap cannot run here: {err}")
    yield sandbox
    sandbox.close()


@pytest.fixture(autouse=True)
def jail_health(bwrap_sandbox, leftover_processes) -> Iterator[None]:  # noqa: ANN001
    yield
    uids = {worker.uid for worker in bwrap_sandbox.pool._workers}
    assert not leftover_processes(uids), "processes outlived the run on the host"
    assert all(worker.process.poll() is None for worker in bwrap_sandbox.pool._workers)
    assert bwrap_sandbox.pool.size == 1


def test_backend_is_reported(bwrap_sandbox) -> None:  # noqa: ANN001
    result = bwrap_sandbox.execute(ExecRequest(files=(), steps=(Step("run", ("true",)),)))
    assert result.ok and result.backend == "bwrap"


@pytest.mark.parametrize("bound_s", [4.0])
def test_timeout_kills_a_spin(bwrap_sandbox, bound_s: float) -> None:  # noqa: ANN001
    step, elapsed = python(bwrap_sandbox, "while True:\n    pass\n", Limits(wall_timeout_s=1, cpu_time_s=10))
    assert step.timed_out and step.signal == 9 and elapsed < bound(bound_s)


@pytest.mark.parametrize(("kind", "bound_s"), [("python", 8.0), ("shell", 8.0)])
def test_fork_bomb_is_contained(bwrap_sandbox, kind: str, bound_s: float) -> None:  # noqa: ANN001
    limit = 32
    step, elapsed = python(bwrap_sandbox, FORK_BOMBS[kind], Limits(wall_timeout_s=2, max_processes=limit))
    assert step.timed_out, step
    assert limit // 2 < fork_bomb_peak(step) <= limit, step.stdout  # RLIMIT_NPROC held, and was reached
    assert elapsed < bound(bound_s)


@pytest.mark.parametrize(("kind", "bound_s"), [(kind, 4.0) for kind in SURVIVORS])
def test_survivors_are_killed(bwrap_sandbox, kind: str, bound_s: float) -> None:  # noqa: ANN001
    started = time.monotonic()
    step, _ = python(bwrap_sandbox, SURVIVORS[kind])
    assert step.exit_code == 0
    listing, _ = python(bwrap_sandbox, LIST_PROCESSES)
    assert listing.stdout == b"[]\n"
    assert time.monotonic() - started < bound(bound_s)


@pytest.mark.parametrize("bound_s", [4.0])
def test_memory_bomb_hits_the_address_space_limit(bwrap_sandbox, bound_s: float) -> None:  # noqa: ANN001
    step, elapsed = python(bwrap_sandbox, "x = bytearray(2_000_000_000)\n", Limits(memory_mb=256))
    assert step.exit_code == 1 and b"MemoryError" in step.stderr and elapsed < bound(bound_s)


@pytest.mark.parametrize("bound_s", [6.0])
def test_output_is_capped_and_large_output_does_not_deadlock(bwrap_sandbox, bound_s: float) -> None:  # noqa: ANN001
    started = time.monotonic()
    bomb = "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n"
    step, _ = python(bwrap_sandbox, bomb, Limits(wall_timeout_s=1, output_bytes=50_000))
    assert step.output_truncated and step.stdout == b"x" * 50_000
    both = "import sys\nsys.stdout.write('o' * 5_000_000)\nsys.stderr.write('e' * 5_000_000)\n"
    step, _ = python(bwrap_sandbox, both, Limits(output_bytes=6_000_000))
    assert step.exit_code == 0 and len(step.stdout) == len(step.stderr) == 5_000_000
    binary = "import sys\nsys.stdout.buffer.write(bytes(range(256)))\n"
    step, _ = python(bwrap_sandbox, binary)
    assert step.stdout == bytes(range(256))
    assert time.monotonic() - started < bound(bound_s)


@pytest.mark.parametrize("bound_s", [4.0])
def test_no_state_leaks_to_the_next_run(bwrap_sandbox, bound_s: float) -> None:  # noqa: ANN001
    started = time.monotonic()
    planted, _ = python(bwrap_sandbox, PLANT)
    assert_all_planted(planted, keyring="ok")  # files, SysV IPC, a message queue and a key
    snoop, _ = python(bwrap_sandbox, SNOOP)
    assert snoop.stdout == SNOOPED_NOTHING, snoop
    assert time.monotonic() - started < bound(bound_s)


@pytest.mark.parametrize("bound_s", [8.0])
def test_no_network(bwrap_sandbox, host_http_server: int, bound_s: float) -> None:  # noqa: ANN001, F811
    code = NETWORK_PROBE.replace("PORT", str(host_http_server)).replace("BRIDGE", docker0_ip())
    step, elapsed = python(bwrap_sandbox, code)
    results = json.loads(step.stdout)
    assert len(results) == 7 and "REACHED" not in results.values(), results
    assert elapsed < bound(bound_s)


@pytest.mark.parametrize("bound_s", [4.0])
def test_file_system_and_privilege_escapes_fail(bwrap_sandbox, bound_s: float) -> None:  # noqa: ANN001
    started = time.monotonic()
    with pytest.raises(InvalidRequest):
        bwrap_sandbox.execute(ExecRequest(files=(("../x", b""),), steps=(Step("run", ("true",)),)))
    step, _ = python(bwrap_sandbox, FS_PROBE)
    results = json.loads(step.stdout)
    # The server file is bound under /run here, so the probe's /opt path simply does not exist.
    assert len(results) == 12 and "ALLOWED" not in results.values(), results
    step, _ = python(bwrap_sandbox, PRIVILEGE_PROBE)
    report = json.loads(step.stdout)
    assert "ALLOWED" not in report["results"].values(), report
    assert report["uid"] != 0 and report["cap_eff"] == "0000000000000000"
    assert time.monotonic() - started < bound(bound_s)
