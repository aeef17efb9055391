"""Sandbox fixtures: one warm Docker sandbox for the whole session, and a host health check."""

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import resources


@pytest.fixture(scope="session")
def docker_sandbox() -> Iterator:
    """A DockerSandbox with a warm pool, shared by every sandbox test (mark tests `docker`).

    Skips loudly when no engine answers or the image is not built (`assay sandbox build-image`);
    fails instead when ASSAY_REQUIRE names `docker`.
    """
    sandbox = resources.open_docker_sandbox(pool_size=4)
    yield sandbox
    sandbox.close()


def sandbox_processes(uids: set[int] | None = None) -> list[str]:
    """Host processes running as a sandbox uid (`pid: cmdline`); none may outlive a request.

    Args:
        uids: Only these uids (default: this process's containers' uids, since other test
            sessions on the machine may be running programs right now).
    """
    if uids is None:
        uids = {int(c.labels["assay.uid"]) for c in own_containers()}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid not in uids:
                continue
            status = (entry / "status").read_text()
            if "\nState:\tZ" in status:
                continue
            found.append(f"{entry.name}: {(entry / 'cmdline').read_bytes()[:80]!r}")
        except OSError:  # the process ended while we looked
            continue
    return found


def own_containers() -> list:
    """Sandbox containers started by this process (other sessions may be using the engine too)."""
    from sandbox.docker_backend import docker_client, list_sandbox_containers, process_identity

    owner = process_identity(os.getpid())
    return [c for c in list_sandbox_containers(docker_client()) if c.labels.get("assay.owner") == owner]


def sandbox_containers() -> list[str]:
    """Names of this process's sandbox containers."""
    return sorted(c.name for c in own_containers())


@pytest.fixture
def leftover_processes():  # noqa: ANN201
    """The `sandbox_processes(uids)` scan, for tests of other backends (conftest is not importable)."""
    return sandbox_processes


def memory_available_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 0


@pytest.fixture
def host_health(docker_sandbox) -> Iterator[None]:  # noqa: ANN001
    """After the test: no sandbox-uid process left on the host, the pool's containers (and no
    others of ours) still there, host memory and disk fine."""
    before = sandbox_containers()
    yield
    leftovers = sandbox_processes()
    assert not leftovers, f"processes outlived the run on the host: {leftovers}"
    assert sandbox_containers() == before, "sandbox containers were leaked or lost"
    assert docker_sandbox.pool.size == docker_sandbox.config.pool_size
    assert memory_available_mb() > 1024, "host memory is low after the run"
    for path in ("/var/lib/docker", "/tmp"):
        if os.path.exists(path):
            assert shutil.disk_usage(path).free > 1 << 30, f"{path}: disk nearly full after the run"
