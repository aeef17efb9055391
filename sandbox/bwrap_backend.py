"""The bubblewrap backend: the fallback where no Docker engine answers. WEAKER isolation.

Each warm jail is `bwrap` with its own pid, ipc, uts, network (none) and mount namespaces, the
host's /usr and /etc (or a configured root file system) bound read-only, size-limited tmpfs for
/work, /tmp and /dev/shm, every capability dropped but the fork server's SETUID, SETGID and KILL,
and the same fork server as pid 1, reached over the jail's stdin/stdout. Per step the same
rlimits, uid drop, deadline, output cap and cleanup apply as in Docker.

What is weaker than Docker: no cgroup, so no memory limit beyond RLIMIT_AS (a step with
`limit_address_space=False` has none), no CPU quota beyond RLIMIT_CPU, no pids cgroup beyond
RLIMIT_NPROC (per uid), and world-readable files under the bound host directories are readable.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sandbox import server as protocol
from sandbox.config import SandboxConfig
from sandbox.docker_backend import exchange, request_message, result_from_reply
from sandbox.errors import SandboxError
from sandbox.execution import ExecRequest, ExecResult
from sandbox.image import SANDBOX_UID_BASE, SANDBOX_UID_COUNT
from sandbox.pool import PooledSandbox, WarmPool, WorkerBroken

log = logging.getLogger(__name__)

SERVER_PATH = Path(__file__).with_name("server.py")
HOST_DIRS = ("usr", "etc", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bwrap-spawner")
_uid_lock = threading.Lock()
_uids_in_use: set[int] = set()


def bwrap_command(config: SandboxConfig, uid: int) -> list[str]:
    """The bwrap command line of one jail running the fork server for `uid`."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxError("bubblewrap is not installed (apt-get install bubblewrap)")
    # --unshare-all less the user namespace when root: in one, the sandbox uid would be unmapped.
    namespaces = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
    if os.geteuid() != 0:
        namespaces.append("--unshare-user")
    command = [bwrap, *namespaces, "--die-with-parent", "--new-session", "--as-pid-1"]
    command += ["--cap-drop", "ALL"]
    for cap in ("SETUID", "SETGID", "KILL"):
        command += ["--cap-add", f"CAP_{cap}"]
    root = Path(config.bwrap_rootfs)
    if root == Path("/"):
        for name in HOST_DIRS:  # only the toolchains and their configuration, not the host's data
            path = Path("/") / name
            if path.is_symlink():
                command += ["--symlink", os.readlink(path), f"/{name}"]
            elif path.is_dir():
                command += ["--ro-bind", str(path), f"/{name}"]
    else:
        if not root.is_dir():
            raise SandboxError(f"bwrap_rootfs: {root} is not a directory")
        command += ["--ro-bind", str(root), "/"]
    limits = config.limits
    command += ["--proc", "/proc", "--dev", "/dev", "--mqueue", "/dev/mqueue"]  # so the server can wipe it
    for mount, size_mb in (
        ("/work", limits.workdir_mb),
        ("/tmp", config.tmp_mb),
        ("/dev/shm", config.tmp_mb),
    ):
        command += ["--size", str(size_mb << 20), "--perms", "1777", "--tmpfs", mount]
    command += ["--tmpfs", "/run", "--ro-bind", str(SERVER_PATH), "/run/assay-server.py"]
    command += ["--clearenv", "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin", "--hostname", "sandbox"]
    command += ["--chdir", "/", "python3", "-I", "-S", "/run/assay-server.py", "--uid", str(uid)]
    return command + ["--workdir", "/work"]


class BwrapWorker:
    """One warm bwrap jail with the fork server on its stdin/stdout."""

    def __init__(self, config: SandboxConfig) -> None:
        self._config = config
        self.uid = _claim_uid() if os.geteuid() == 0 else os.geteuid()
        self._lock = threading.Lock()
        # --die-with-parent fires when the *thread* that forked bwrap ends, so every jail is
        # started from one long-lived thread rather than from the pool's short-lived starters.
        self.process = _SPAWNER.submit(
            subprocess.Popen,
            bwrap_command(config, self.uid),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        ).result()
        try:
            reply, _ = self._call({"op": "ping"}, [], config.start_timeout_s)
        except WorkerBroken as err:
            stderr = self._stderr()
            self.close()
            raise SandboxError(f"bwrap jail did not start: {err}: {stderr}") from err
        if not reply.get("ok"):
            self.close()
            raise SandboxError(f"bwrap jail answered a ping with {reply}")

    def _stderr(self) -> str:
        with contextlib.suppress(Exception):
            self.process.kill()
            return self.process.stderr.read(4000).decode(errors="replace").strip()  # type: ignore[union-attr]
        return ""

    def _call(self, header: dict, blobs: list[bytes], timeout: float) -> tuple[dict, list[bytes]]:
        out_fd = self.process.stdout.fileno()  # type: ignore[union-attr]
        read_exact = protocol.fd_reader(out_fd, deadline=time.monotonic() + timeout)

        def send(message: bytes) -> None:
            self.process.stdin.write(message)  # type: ignore[union-attr]
            self.process.stdin.flush()  # type: ignore[union-attr]

        return exchange(send, read_exact, header, blobs, timeout)

    def execute(self, request: ExecRequest) -> ExecResult:
        """Run one request in this jail; WorkerBroken when the jail misbehaves."""
        header, blobs, timeout = request_message(request, self._config.call_grace_s)
        reply, out = self._call(header, blobs, timeout)
        return result_from_reply(reply, out, "bwrap")

    def close(self) -> None:
        """Kill the jail (its server is pid 1 there: everything inside dies with it)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            self.process.wait(timeout=10)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            with contextlib.suppress(Exception):
                stream.close()  # type: ignore[union-attr]
        with _uid_lock:
            _uids_in_use.discard(self.uid)


def _claim_uid() -> int:
    with _uid_lock:
        free = [
            SANDBOX_UID_BASE + i for i in range(SANDBOX_UID_COUNT) if SANDBOX_UID_BASE + i not in _uids_in_use
        ]
        uid = random.choice(free) if free else SANDBOX_UID_BASE + random.randrange(SANDBOX_UID_COUNT)
        _uids_in_use.add(uid)
        return uid


class BwrapSandbox(PooledSandbox):
    """A `Sandbox` on bubblewrap jails: the weaker fallback, logged loudly when opened.

    Args:
        config: Pool size, limits, and `bwrap_rootfs` (the tree bound read-only as /).
    """

    backend = "bwrap"

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig(backend="bwrap")
        log.warning(
            "sandbox backend bwrap: WEAKER ISOLATION than Docker (no cgroup memory/CPU/pids limits; "
            "host files under /usr and /etc are readable)"
        )
        self._pool = WarmPool(
            lambda: BwrapWorker(self.config),
            self.config.pool_size,
            backend="bwrap",
            acquire_timeout_s=self.config.acquire_timeout_s,
        )
