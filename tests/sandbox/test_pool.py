"""The warm pool: broken containers are replaced, leftovers of killed owners are reaped, closing
removes everything. The first tests use stand-in workers (no Docker); the rest the real engine."""

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from timing import bound

from sandbox.errors import SandboxError
from sandbox.execution import ExecRequest, ExecResult, Limits, Step
from sandbox.pool import WarmPool, WorkerBroken

ROOT = Path(__file__).resolve().parents[2]
REQUEST = ExecRequest(files=(), steps=(Step("run", ("true",)),))


class FakeWorker:
    """Answers requests; breaks on demand."""

    started = 0

    def __init__(self) -> None:
        FakeWorker.started += 1
        self.broken = False
        self.closed = False

    def execute(self, request: ExecRequest) -> ExecResult:
        if self.broken:
            raise WorkerBroken("container died")
        return ExecResult(steps=(), backend="fake")

    def close(self) -> None:
        self.closed = True


def wait_for(condition, timeout: float = 10.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + bound(timeout)
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_pool_replaces_a_broken_worker_and_keeps_its_size() -> None:
    pool = WarmPool(FakeWorker, size=2, backend="fake")
    workers = list(pool._workers)
    workers[0].broken = True
    results = [pool.run(REQUEST) for _ in range(4)]
    errors = [r for r in results if r.error]
    assert len(errors) == 1 and "replaced" in errors[0].error
    assert workers[0].closed and pool.replaced == 1
    wait_for(lambda: pool.size == 2 and pool._idle.qsize() == 2)
    assert all(r.error is None for r in (pool.run(REQUEST) for _ in range(4)))
    pool.close()
    assert all(w.closed for w in workers)
    with pytest.raises(SandboxError, match="closed"):
        pool.run(REQUEST)


def test_pool_fails_waiters_when_no_worker_can_be_started() -> None:
    calls = []

    def factory() -> FakeWorker:
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("engine gone")
        worker = FakeWorker()
        worker.broken = True
        return worker

    pool = WarmPool(factory, size=1, backend="fake", acquire_timeout_s=30)
    assert pool.run(REQUEST).error
    started = time.monotonic()
    with pytest.raises(SandboxError, match="closed"):
        pool.run(REQUEST)  # no worker left and none starting: fail fast instead of waiting 30 s
    assert time.monotonic() - started < bound(5)


def test_pool_start_failure_is_a_clear_error() -> None:
    def factory() -> FakeWorker:
        raise RuntimeError("no image")

    with pytest.raises(SandboxError, match="could not start 2 of 2.*no image"):
        WarmPool(factory, size=2, backend="fake")


# ---------------------------------------------------------------- the real engine


def containers_of(owner_pid: int, ignore: frozenset[str] = frozenset()) -> list:
    """Sandbox containers of a process, less those named in `ignore` (the session's own pool)."""
    from sandbox.docker_backend import docker_client, list_sandbox_containers

    return [
        c
        for c in list_sandbox_containers(docker_client())
        if c.labels.get("assay.owner", "").split(":")[1:2] == [str(owner_pid)] and c.name not in ignore
    ]


def names_of(owner_pid: int) -> frozenset[str]:
    return frozenset(c.name for c in containers_of(owner_pid))


@pytest.fixture
def small_sandbox() -> Iterator:
    from sandbox.config import SandboxConfig
    from sandbox.docker_backend import DockerSandbox

    sandbox = DockerSandbox(SandboxConfig(backend="docker", pool_size=2, call_grace_s=1.0))
    yield sandbox
    sandbox.close()


def run_ok(sandbox) -> bool:  # noqa: ANN001
    result = sandbox.execute(ExecRequest(files=(), steps=(Step("run", ("python3", "-c", "print(1)")),)))
    return result.ok and result.steps[0].stdout == b"1\n"


@pytest.mark.docker
@pytest.mark.parametrize("bound_s", [20.0])
def test_killed_container_is_replaced(small_sandbox, bound_s: float) -> None:
    started = time.monotonic()
    victim = small_sandbox.pool._workers.copy().pop().container
    victim.kill()
    results = [run_ok(small_sandbox) for _ in range(4)]
    assert results.count(False) <= 1  # the request that met the dead container gets an error result
    wait_for(lambda: small_sandbox.pool.size == 2 and small_sandbox.pool._idle.qsize() == 2)
    assert all(run_ok(small_sandbox) for _ in range(4))
    names = [c.name for c in containers_of(os.getpid())]
    assert victim.name not in names
    assert time.monotonic() - started < bound(bound_s)


@pytest.mark.docker
@pytest.mark.parametrize("bound_s", [20.0])
def test_unresponsive_container_times_out_on_the_host_and_is_replaced(small_sandbox, bound_s: float) -> None:
    started = time.monotonic()
    for worker in small_sandbox.pool._workers.copy():
        worker.container.pause()  # the server cannot answer at all
    request = ExecRequest(files=(), steps=(Step("run", ("true",)),), limits=Limits(wall_timeout_s=1))
    result = small_sandbox.execute(request)
    assert result.error and "no answer" in result.error
    assert time.monotonic() - started < bound(1 + 1.0 + 3)  # step timeout + call grace + slack
    small_sandbox.execute(request)  # the second paused one
    wait_for(lambda: small_sandbox.pool.size == 2 and small_sandbox.pool._idle.qsize() == 2)
    assert all(run_ok(small_sandbox) for _ in range(4))
    assert small_sandbox.pool.replaced == 2
    assert time.monotonic() - started < bound(bound_s)


@pytest.mark.docker
@pytest.mark.parametrize("bound_s", [5.0])
def test_bad_request_does_not_break_the_pool(small_sandbox, bound_s: float) -> None:
    from sandbox.validation import InvalidRequest

    started = time.monotonic()
    for bad in (
        ExecRequest(files=(("../x", b""),), steps=(Step("run", ("true",)),)),
        ExecRequest(files=(), steps=()),
        ExecRequest(files=(), steps=(Step("run", ()),)),
        ExecRequest(files=(("a", b""), ("a", b"")), steps=(Step("run", ("true",)),)),
        ExecRequest(files=(("a", b""), ("a/b", b"")), steps=(Step("run", ("true",)),)),
        ExecRequest(
            files=(("big", b"x" * (2 << 20)),), steps=(Step("run", ("true",)),), limits=Limits(workdir_mb=1)
        ),
    ):
        with pytest.raises(InvalidRequest):
            small_sandbox.execute(bad)
    assert small_sandbox.pool.replaced == 0 and run_ok(small_sandbox)
    assert time.monotonic() - started < bound(bound_s)


OWNER_SCRIPT = """
import sys, time
from sandbox.config import SandboxConfig
from sandbox.docker_backend import DockerSandbox
sandbox = DockerSandbox(SandboxConfig(backend="docker", pool_size=2))
print("ready", flush=True)
time.sleep(600)
"""


def start_owner() -> subprocess.Popen:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER_SCRIPT], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    line = owner.stdout.readline()
    assert line == b"ready\n", owner.stderr.read() if owner.poll() is not None else line
    return owner


@pytest.mark.docker
@pytest.mark.parametrize("bound_s", [30.0])
def test_containers_of_a_sigkilled_owner_are_reaped_at_start(bound_s: float) -> None:
    from sandbox.config import SandboxConfig
    from sandbox.docker_backend import DockerSandbox

    started = time.monotonic()
    session_pool = names_of(os.getpid())  # other tests' sandboxes may be open in this process
    owner = start_owner()
    left = containers_of(owner.pid)
    assert len(left) == 2
    rundirs = [Path(c.labels["assay.rundir"]) for c in left]
    owner.send_signal(signal.SIGKILL)  # no atexit, no handler: its containers stay behind
    owner.wait()
    assert len(containers_of(owner.pid)) == 2
    with DockerSandbox(SandboxConfig(backend="docker", pool_size=1)) as sandbox:
        assert containers_of(owner.pid) == []
        assert not any(path.exists() for path in rundirs)
        assert run_ok(sandbox)
    assert containers_of(os.getpid(), ignore=session_pool) == []
    assert time.monotonic() - started < bound(bound_s)


@pytest.mark.docker
@pytest.mark.parametrize("bound_s", [30.0])
def test_sigterm_removes_the_owners_containers(bound_s: float) -> None:
    started = time.monotonic()
    owner = start_owner()
    assert len(containers_of(owner.pid)) == 2
    owner.send_signal(signal.SIGTERM)
    assert owner.wait(timeout=20) == -signal.SIGTERM  # the default action still happens after cleanup
    assert containers_of(owner.pid) == []
    assert time.monotonic() - started < bound(bound_s)


@pytest.mark.docker
@pytest.mark.parametrize("bound_s", [20.0])
def test_close_removes_everything_even_while_busy(bound_s: float) -> None:
    from sandbox.config import SandboxConfig
    from sandbox.docker_backend import DockerSandbox

    started = time.monotonic()
    session_pool = names_of(os.getpid())
    sandbox = DockerSandbox(SandboxConfig(backend="docker", pool_size=2))
    rundirs = [w.rundir for w in sandbox.pool._workers]
    busy: list[ExecResult] = []
    request = ExecRequest(files=(), steps=(Step("run", ("sleep", "30")),))
    thread = threading.Thread(target=lambda: busy.append(sandbox.execute(request)))
    thread.start()
    time.sleep(0.5)
    sandbox.close()
    thread.join(timeout=10)
    assert busy and busy[0].error  # the running request ends with an error, promptly
    assert containers_of(os.getpid(), ignore=session_pool) == []
    assert not any(path.exists() for path in rundirs)
    with pytest.raises(SandboxError, match="closed"):
        sandbox.execute(REQUEST)
    assert time.monotonic() - started < bound(bound_s)
