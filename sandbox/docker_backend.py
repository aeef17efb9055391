"""The Docker backend: warm containers, each running the fork server as its pid 1.

Every container has no network, a read-only root file system, size-limited tmpfs mounts for the
work directory, /tmp and /dev/shm, a memory cgroup limit without swap, a pids limit, a CPU quota,
all capabilities dropped but the three the fork server needs to drop privileges and kill
(SETUID, SETGID, KILL; the steps themselves run with none), and no-new-privileges. The host talks
to the server over a unix socket in a bind-mounted per-container directory (mode 0700, so the
sandbox user cannot reach it); one request at a time per container.

Containers carry the label `assay.sandbox=1` and their owner (host, pid, process start time):
they are removed on close, at exit and on SIGTERM/SIGHUP, and a new sandbox reaps those whose
owner is dead (killed with SIGKILL, for instance) before it starts its own.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import random
import shutil
import signal
import socket
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox import server as protocol
from sandbox.config import SandboxConfig
from sandbox.errors import SandboxError
from sandbox.execution import ExecRequest, ExecResult, StepResult
from sandbox.image import SANDBOX_UID_BASE, SANDBOX_UID_COUNT
from sandbox.pool import PooledSandbox, WarmPool, WorkerBroken
from sandbox.validation import step_timeouts

log = logging.getLogger(__name__)

LABEL = "assay.sandbox"
SERVER_PATH = Path(__file__).with_name("server.py")
SOCKET_NAME = "server.sock"
# The fork server needs these to drop each step to the sandbox uid and to kill it; steps have none.
SERVER_CAPABILITIES = ["SETUID", "SETGID", "KILL"]
_uid_lock = threading.Lock()
_uids_in_use: set[int] = set()


def process_identity(pid: int) -> str | None:
    """`host:pid:start-time` of a live process (the start time tells a reused pid apart), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            start_time = f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None
    return f"{socket.gethostname()}:{pid}:{start_time}"


def owner_is_alive(owner: str) -> bool:
    """Whether the process that labelled a container still runs (other hosts count as alive)."""
    host, _, rest = owner.partition(":")
    if host != socket.gethostname():
        return True
    pid = rest.split(":", 1)[0]
    return pid.isdigit() and process_identity(int(pid)) == owner


def docker_client(timeout: float = 60.0) -> Any:
    """A docker SDK client for the local engine, or SandboxError saying why there is none."""
    import docker

    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as err:  # noqa: BLE001 - any failure means no usable engine
        raise SandboxError(f"no Docker engine answers ({err}); run scripts/ensure_docker.sh") from err
    return client


@dataclass(frozen=True)
class ContainerInfo:
    """A sandbox container as the engine lists it."""

    id: str
    name: str
    status: str
    labels: dict[str, str]


def list_sandbox_containers(client: Any) -> list[ContainerInfo]:
    """Every sandbox container on the engine (one list call: no inspect that could race a removal)."""
    listed = client.api.containers(all=True, filters={"label": f"{LABEL}=1"})
    return [
        ContainerInfo(
            c["Id"], (c.get("Names") or ["?"])[0].lstrip("/"), c.get("State", ""), c.get("Labels") or {}
        )
        for c in listed
    ]


def reap_leftovers(client: Any, *, everything: bool = False) -> int:
    """Remove sandbox containers whose owner process is dead (or all of them); return how many."""
    removed = 0
    for container in list_sandbox_containers(client):
        labels = container.labels
        if not everything and owner_is_alive(labels.get("assay.owner", "")):
            continue
        with contextlib.suppress(Exception):  # another process may be reaping it right now
            client.api.remove_container(container.id, force=True)
            removed += 1
        rundir = labels.get("assay.rundir", "")
        if rundir and Path(rundir).name.startswith("assay-sbx-"):
            shutil.rmtree(rundir, ignore_errors=True)
    return removed


class DockerWorker:
    """One warm container with its fork server, reached over a unix socket."""

    def __init__(self, client: Any, config: SandboxConfig, image: str, owner: str) -> None:
        self._config = config
        self.uid = _claim_uid(client)
        self.rundir = Path(tempfile.mkdtemp(prefix="assay-sbx-"))
        os.chmod(self.rundir, 0o700)
        limits = config.limits
        self.memory_mb = limits.memory_mb
        self.container = None
        self._sock: socket.socket | None = None
        self._state = threading.Lock()
        self._busy = False
        self._closed = False
        try:
            self.container = client.containers.run(
                image,
                ["python3", "-I", "-S", "/opt/assay/server.py", "--uid", str(self.uid)]
                + ["--workdir", "/work", "--socket", f"/run/assay/{SOCKET_NAME}"],
                name=f"assay-sbx-{os.getpid()}-{uuid.uuid4().hex[:8]}",
                detach=True,
                user="0",
                network_mode="none",
                read_only=True,
                tmpfs={
                    "/work": f"size={limits.workdir_mb}m,uid={self.uid},gid={self.uid},mode=0700,"
                    "exec,nosuid,nodev",
                    "/tmp": f"size={config.tmp_mb}m,mode=1777,exec,nosuid,nodev",
                },
                shm_size=f"{config.tmp_mb}m",
                volumes={
                    str(SERVER_PATH): {"bind": "/opt/assay/server.py", "mode": "ro"},
                    str(self.rundir): {"bind": "/run/assay", "mode": "rw"},
                },
                mem_limit=f"{self.memory_mb + config.memory_headroom_mb}m",
                memswap_limit=f"{self.memory_mb + config.memory_headroom_mb}m",
                pids_limit=limits.max_processes + 16,
                nano_cpus=int(config.cpus * 1e9),
                cap_drop=["ALL"],
                cap_add=SERVER_CAPABILITIES,
                security_opt=["no-new-privileges"],
                ipc_mode="private",
                hostname="sandbox",
                working_dir="/",
                environment={"PYTHONDONTWRITEBYTECODE": "1"},
                labels={
                    LABEL: "1",
                    "assay.owner": owner,
                    "assay.uid": str(self.uid),
                    "assay.rundir": str(self.rundir),
                },
            )
            self._sock = self._connect(config.start_timeout_s)
        except BaseException:
            self.close()
            raise

    def _connect(self, timeout: float) -> socket.socket:
        path = self.rundir / SOCKET_NAME
        deadline = time.monotonic() + timeout
        while not path.exists():
            if time.monotonic() > deadline:
                raise SandboxError(f"sandbox container did not start within {timeout:.0f} s: {self._logs()}")
            self.container.reload()
            if self.container.status in ("exited", "dead"):
                raise SandboxError(f"sandbox container exited at start: {self._logs()}")
            time.sleep(0.02)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(str(path))
        self._sock = sock
        reply, _ = self._call({"op": "ping"}, [], timeout)
        if not reply.get("ok") or reply.get("uid") != self.uid:
            raise SandboxError(f"sandbox server answered a ping with {reply}")
        return sock

    def _logs(self) -> str:
        try:
            return self.container.logs(tail=20).decode(errors="replace").strip()
        except Exception as err:  # noqa: BLE001
            return f"(no logs: {err})"

    def _call(self, header: dict, blobs: list[bytes], timeout: float) -> tuple[dict, list[bytes]]:
        with self._state:
            sock = self._sock
            if sock is None or self._closed:
                raise WorkerBroken("not connected")
            self._busy = True
        try:
            return self._exchange(sock, header, blobs, timeout)
        finally:
            with self._state:
                self._busy = False
                closed = self._closed
            if closed:  # close() ran meanwhile and left closing the descriptor to this thread
                sock.close()

    def _exchange(
        self, sock: socket.socket, header: dict, blobs: list[bytes], timeout: float
    ) -> tuple[dict, list[bytes]]:
        deadline = time.monotonic() + timeout

        def read_exact(n: int) -> bytes:
            buffer = bytearray(n)
            view, got = memoryview(buffer), 0
            while got < n:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                count = sock.recv_into(view[got:])
                if count == 0:
                    raise EOFError("the sandbox server closed the connection")
                got += count
            return bytes(buffer)

        sock.settimeout(timeout)
        return exchange(sock.sendall, read_exact, header, blobs, timeout)

    def execute(self, request: ExecRequest) -> ExecResult:
        """Run one request; WorkerBroken when the container or its server misbehaves."""
        limits = request.limits
        if limits.memory_mb != self.memory_mb:  # the cgroup limit follows the request's
            total = f"{limits.memory_mb + self._config.memory_headroom_mb}m"
            try:
                self.container.update(mem_limit=total, memswap_limit=total)
            except Exception as err:  # noqa: BLE001
                raise WorkerBroken(f"could not set the memory limit: {err}") from err
            self.memory_mb = limits.memory_mb
        header, blobs, timeout = request_message(request, self._config.call_grace_s)
        reply, out = self._call(header, blobs, timeout)
        return result_from_reply(reply, out, "docker")

    def close(self) -> None:
        """Remove the container and its socket directory."""
        with self._state:
            self._closed = True
            sock, busy, self._sock = self._sock, self._busy, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv on it
            if not busy:  # closing under a thread in recv could hand its fd number to another socket
                sock.close()
        if self.container is not None:
            with contextlib.suppress(Exception):
                self.container.remove(force=True)
            self.container = None
        shutil.rmtree(self.rundir, ignore_errors=True)
        with _uid_lock:
            _uids_in_use.discard(self.uid)


def exchange(
    send: Callable[[bytes], object],
    read_exact: Callable[[int], bytes],
    header: dict,
    blobs: list[bytes],
    timeout: float,
) -> tuple[dict, list[bytes]]:
    """Send one request to a fork server and read its answer; WorkerBroken on a timeout (after
    `timeout` seconds), a closed connection or a garbled answer."""
    try:
        send(protocol.encode_message(header, blobs))
        return protocol.decode_message(read_exact)
    except TimeoutError as err:
        raise WorkerBroken(f"no answer within {timeout:.1f} s") from err
    except (OSError, EOFError, ValueError) as err:
        raise WorkerBroken(f"{type(err).__name__}: {err}") from err


def request_message(request: ExecRequest, call_grace_s: float) -> tuple[dict, list[bytes], float]:
    """The fork server's request: a JSON header, the blobs (files, then each step's stdin), and
    the host-side timeout of the call (every step's timeout plus a grace)."""
    limits = request.limits
    header = {
        "op": "exec",
        "files": [name for name, _ in request.files],
        "steps": [
            {
                "name": s.name,
                "argv": list(s.argv),
                "env": [list(kv) for kv in s.env],
                "timeout_s": s.timeout_s,
                "judge": list(s.judge),
            }
            for s in request.steps
        ],
        "limits": {
            "wall_timeout_s": limits.wall_timeout_s,
            "cpu_time_s": limits.cpu_time_s,
            "memory_mb": limits.memory_mb,
            "max_processes": limits.max_processes,
            "output_bytes": limits.output_bytes,
            "file_size_mb": limits.file_size_mb,
            "limit_address_space": limits.limit_address_space,
        },
    }
    blobs = [content for _, content in request.files] + [s.stdin for s in request.steps]
    timeout = sum(step_timeouts(request)) + call_grace_s
    return header, blobs, timeout


def result_from_reply(reply: dict, out: list[bytes], backend: str) -> ExecResult:
    """Turn the fork server's answer into an ExecResult; WorkerBroken if the sandbox failed."""
    steps = []
    for index, step in enumerate(reply.get("steps") or []):
        steps.append(
            StepResult(
                name=step["name"],
                exit_code=step["exit_code"],
                signal=step["signal"],
                stdout=out[2 * index] if 2 * index < len(out) else b"",
                stderr=out[2 * index + 1] if 2 * index + 1 < len(out) else b"",
                timed_out=step["timed_out"],
                memory_exceeded=step["memory_exceeded"],
                output_truncated=step["output_truncated"],
                wall_s=step["wall_s"],
            )
        )
    if not reply.get("ok"):
        error = str(reply.get("error"))
        if error.startswith("bad request"):
            return ExecResult(steps=tuple(steps), backend=backend, error=error)
        raise WorkerBroken(error)
    return ExecResult(steps=tuple(steps), backend=backend)


def _claim_uid(client: Any) -> int:
    """A sandbox uid no other live assay container uses, so per-uid limits (NPROC) stay per container."""
    with _uid_lock:
        taken = set(_uids_in_use)
        with contextlib.suppress(Exception):
            for container in list_sandbox_containers(client):
                uid = container.labels.get("assay.uid", "")
                if uid.isdigit():
                    taken.add(int(uid))
        free = [SANDBOX_UID_BASE + i for i in range(SANDBOX_UID_COUNT) if SANDBOX_UID_BASE + i not in taken]
        uid = random.choice(free) if free else SANDBOX_UID_BASE + random.randrange(SANDBOX_UID_COUNT)
        _uids_in_use.add(uid)
        return uid


class DockerSandbox(PooledSandbox):
    """A `Sandbox` on Docker: a warm pool of containers, each with the fork server.

    Args:
        config: Pool size, image, limits; see SandboxConfig.
        client: A docker SDK client (default: the local engine).
    """

    backend = "docker"

    def __init__(self, config: SandboxConfig | None = None, client: Any = None) -> None:
        self.config = config or SandboxConfig(backend="docker")
        self._client = client or docker_client()
        self.image = self.config.resolved_image()
        try:
            self._client.images.get(self.image)
        except Exception as err:  # noqa: BLE001 - docker.errors.ImageNotFound and friends
            raise SandboxError(
                f"sandbox image {self.image} is missing: build it with `assay sandbox build-image` ({err})"
            ) from err
        self.owner = process_identity(os.getpid()) or f"{socket.gethostname()}:{os.getpid()}:0"
        reaped = reap_leftovers(self._client)
        if reaped:
            log.warning("reaped %d sandbox containers left by dead processes", reaped)
        _register(self)
        self._pool = WarmPool(
            lambda: DockerWorker(self._client, self.config, self.image, self.owner),
            self.config.pool_size,
            backend="docker",
            acquire_timeout_s=self.config.acquire_timeout_s,
        )

    def close(self) -> None:
        """Remove every container this sandbox started."""
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.close()
        _open_sandboxes.discard(self)


# ---------------------------------------------------------------- cleanup at exit and on signals

_open_sandboxes: weakref.WeakSet = weakref.WeakSet()
_hooks_installed = False


def _register(sandbox: Any) -> None:
    """Close `sandbox` at interpreter exit and on SIGTERM/SIGHUP (SIGKILL: reaped by the next start)."""
    global _hooks_installed
    _open_sandboxes.add(sandbox)
    if _hooks_installed:
        return
    _hooks_installed = True
    atexit.register(close_all)
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGHUP):
        previous = signal.getsignal(signum)
        signal.signal(signum, _make_handler(previous))


def _make_handler(previous: Any) -> Any:
    def handler(signum: int, frame: Any) -> None:
        close_all()
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    return handler


def close_all() -> None:
    """Close every open sandbox of this process."""
    for sandbox in list(_open_sandboxes):
        with contextlib.suppress(Exception):
            sandbox.close()
