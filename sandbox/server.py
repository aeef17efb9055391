"""The fork server: runs inside each sandbox (a Docker container or a bwrap jail) as its pid 1.

It takes requests over a unix socket (or its stdin/stdout) without a new `docker exec` per
program, and isolates every step itself: a forked child per step, in its own session and process
group, with rlimits (AS, CPU, FSIZE, NPROC, CORE=0), oom_score_adj 1000, dropped to an
unprivileged uid, killed from here when its wall-clock deadline passes, its output capped while
it streams (the rest is read and dropped, so a big writer never blocks). After each step every
process of the sandbox is killed (double-forked, setsid and nohup survivors included: as pid 1
of the pid namespace this server may `kill(-1, SIGKILL)` everything but itself, and nothing can
signal it back); after each request the work directory, /tmp, /dev/shm, /dev/mqueue and SysV IPC
objects of the sandbox uid are wiped, so nothing leaks to the next request.

A step may carry a trusted peer (`judge`, e.g. the Python harness's judge): forked beside the
program as another uid (the sandbox uid + 100, when this server runs as root), in `/` rather than
the work directory, with the step's stdin and stdout; the program gets /dev/null as stdin, the
step's stderr as stdout and stderr, and a socket pair to the peer on descriptor 3. Processes of
different uids cannot read each other's memory or descriptors, trace or signal each other, so
what the peer writes on stdout is out of the program's reach.

Standard library only: it runs under the image's python3 and is bind-mounted read-only, so
editing it never forces an image rebuild. The host imports the message framing from here.

Wire format (both ways): b"ASY1", a 4-byte big-endian header length, a JSON header whose
"blobs" list gives the byte lengths of the raw blobs that follow.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import json
import math
import os
import resource
import select
import signal
import socket
import stat
import struct
import sys
import time
from collections.abc import Callable

MAGIC = b"ASY1"
MAX_HEADER = 16 << 20
MAX_BLOB = 1 << 30
WIPE_DIRS = ("/tmp", "/dev/shm", "/dev/mqueue")
JUDGE_UID_OFFSET = 100  # sandbox uids are 20000-20099: their judges run as 20100-20199
STEP_OOM_SCORE = 1000  # the OOM killer takes the program first...
JUDGE_OOM_SCORE = 500  # ...then the judge, never the server
READ_CHUNK = 1 << 16


# ---------------------------------------------------------------- framing (shared with the host)


def encode_message(header: dict, blobs: list[bytes]) -> bytes:
    """Frame a JSON header and raw blobs as one message."""
    body = json.dumps(header | {"blobs": [len(b) for b in blobs]}).encode()
    return b"".join([MAGIC, struct.pack(">I", len(body)), body, *blobs])


def decode_message(read_exact: Callable[[int], bytes]) -> tuple[dict, list[bytes]]:
    """Read one message with `read_exact(n)` (which raises EOFError on a closed channel)."""
    prefix = read_exact(8)
    if prefix[:4] != MAGIC:
        raise ValueError("bad message prefix")
    (length,) = struct.unpack(">I", prefix[4:])
    if length > MAX_HEADER:
        raise ValueError(f"message header of {length} bytes is too large")
    header = json.loads(read_exact(length))
    sizes = header.pop("blobs", [])
    if any(not isinstance(n, int) or n < 0 or n > MAX_BLOB for n in sizes):
        raise ValueError("bad blob sizes")
    return header, [read_exact(n) if n else b"" for n in sizes]


def fd_reader(fd: int, deadline: float | None = None) -> Callable[[int], bytes]:
    """A `read_exact` over a file descriptor; with a `deadline` (time.monotonic()), a read still
    waiting then raises TimeoutError."""

    def read_exact(n: int) -> bytes:
        parts, missing = [], n
        while missing:
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                    raise TimeoutError
            chunk = os.read(fd, min(missing, 1 << 20))
            if not chunk:
                raise EOFError("channel closed")
            parts.append(chunk)
            missing -= len(chunk)
        return b"".join(parts)

    return read_exact


def write_all(fd: int, data: bytes) -> None:
    """Write every byte to a (blocking) file descriptor."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def safe_relative_path(name: str) -> bool:
    """True for a non-empty relative path without `..`, NUL or absolute parts."""
    if not name or "\x00" in name or name.startswith("/"):
        return False
    parts = name.split("/")
    return all(part not in ("", ".", "..") for part in parts)


# ---------------------------------------------------------------- the server


class Server:
    """Runs requests one at a time for one sandbox uid.

    Args:
        uid: The unprivileged uid (and gid) every step runs as.
        workdir: The tmpfs work directory, owned by `uid`.
        memory_cgroup_dir: Where memory.oom_control / memory.events tell about OOM kills.
    """

    def __init__(self, uid: int, workdir: str, memory_cgroup_dir: str = "/sys/fs/cgroup") -> None:
        self.uid = uid
        # The trusted peer of a step (Step.judge) runs as another uid, so the program cannot read
        # its memory or signal it; a jail of an unprivileged user has one uid only (the peer then
        # protects itself by becoming non-dumpable).
        self.judge_uid = uid + JUDGE_UID_OFFSET if os.getuid() == 0 else uid
        self.workdir = workdir
        self.oom_files = [
            os.path.join(memory_cgroup_dir, "memory", "memory.oom_control"),  # cgroup v1
            os.path.join(memory_cgroup_dir, "memory.events"),  # cgroup v2
        ]
        self.exited: dict[int, int] = {}  # statuses of children reaped while sweeping

    # -- request handling

    def handle(self, header: dict, blobs: list[bytes]) -> tuple[dict, list[bytes]]:
        """Answer one message: `ping`, or `exec` (write files, run steps, reset)."""
        op = header.get("op")
        if op == "ping":
            return {"ok": True, "pid": os.getpid(), "uid": self.uid}, []
        if op != "exec":
            return {"ok": False, "error": f"unknown op {op!r}"}, []
        try:
            files, steps, limits = header["files"], header["steps"], header["limits"]
            contents, stdins = blobs[: len(files)], blobs[len(files) :]
            if len(stdins) != len(steps):
                raise ValueError("one stdin blob per step is expected")
            for name in files:
                if not safe_relative_path(name):
                    raise ValueError(f"unsafe file name {name!r}")
        except (KeyError, TypeError, ValueError) as err:
            return {"ok": False, "error": f"bad request: {err}"}, []
        try:
            error = self.as_sandbox_user(
                lambda: write_files(self.workdir, list(zip(files, contents, strict=True)))
            )
            if error:
                # The reset below still runs, so the sandbox stays usable: the request was at fault.
                return {"ok": False, "error": f"bad request: writing its files failed: {error}"}, []
            results, out_blobs = [], []
            for step, stdin in zip(steps, stdins, strict=True):
                result, stdout, stderr = self.run_step(step, stdin, limits)
                results.append(result)
                out_blobs += [stdout, stderr]
                if result["exit_code"] != 0:
                    break
        finally:
            reset_error = self.reset()
        if reset_error:  # the host replaces a sandbox that cannot be made clean
            return {"ok": False, "error": f"reset failed: {reset_error}", "steps": results}, out_blobs
        return {"ok": True, "steps": results}, out_blobs

    def run_step(self, step: dict, stdin: bytes, limits: dict) -> tuple[dict, bytes, bytes]:
        """Fork, isolate and exec one step; enforce its deadline and output cap from here."""
        timeout = float(step.get("timeout_s") or limits["wall_timeout_s"])
        cap = int(limits["output_bytes"])
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": self.workdir,
            "LANG": "C.UTF-8",
            "TMPDIR": "/tmp",
        }
        env.update(dict(step.get("env", [])))
        oom_before = self.oom_kills()
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        started = time.monotonic()
        judge = step.get("judge") or []
        if judge:
            # The trusted peer: another uid (where the server can switch), outside the work
            # directory; it alone holds the step's stdin and stdout. The program gets no stdin,
            # writes to stderr, and reaches the peer only through the socket pair on fd 3.
            ours, theirs = socket.socketpair()
            null = os.open(os.devnull, os.O_RDONLY)
            # The judge needs no protection of its own when the program runs as another uid.
            judge_env = {**env, "HOME": "/", "ASSAY_PROGRAM_UID": str(self.uid)}
            pid = self._spawn(judge, judge_env, limits, timeout, (in_r, out_w, err_w, ours.fileno()),
                              self.judge_uid, "/", JUDGE_OOM_SCORE)  # fmt: skip
            program = self._spawn(step["argv"], env, limits, timeout, (null, err_w, err_w, theirs.fileno()),
                                  self.uid, self.workdir, STEP_OOM_SCORE)  # fmt: skip
            ours.close()
            theirs.close()
            os.close(null)
        else:
            pid = program = self._spawn(step["argv"], env, limits, timeout, (in_r, out_w, err_w), self.uid,
                                        self.workdir, STEP_OOM_SCORE)  # fmt: skip
        for fd in (in_r, out_w, err_w):
            os.close(fd)
        pidfd = os.pidfd_open(pid)
        streams = {out_r: bytearray(), err_r: bytearray()}
        truncated = False
        pending = memoryview(stdin)
        if not pending:
            os.close(in_w)
            in_w = -1
        else:
            os.set_blocking(in_w, False)
        deadline = started + timeout
        status: int | None = None
        timed_out = False
        while status is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                break
            readers = [pidfd, *streams]
            writers = [in_w] if in_w >= 0 else []
            ready_r, ready_w, _ = select.select(readers, writers, [], remaining)
            for fd in ready_r:
                if fd == pidfd:
                    status = self._wait(pid)
                elif self._read_into(fd, streams, cap):
                    truncated = True
            if ready_w:
                try:
                    pending = pending[os.write(in_w, pending[: 1 << 16]) :]
                except (BrokenPipeError, OSError):
                    pending = pending[:0]
                if not pending:
                    os.close(in_w)
                    in_w = -1
        if in_w >= 0:
            os.close(in_w)
        # The step is over: nothing it started may live on (into the next step or request).
        self.kill_all()
        if status is None:
            status = self._wait(pid)
        # With a judge, the step's status is the judge's: it exits 0 when the program dies under it.
        # The program's own status still tells whether its CPU limit (SIGXCPU) ended it, which is a
        # timeout whichever of the two limits comes first.
        program_status = status if program == pid else self._wait(program)
        self.exited.clear()
        os.close(pidfd)
        for fd in list(streams):  # every writer is dead now: read what is left up to EOF
            while True:
                got = self._read_into(fd, streams, cap)
                truncated |= bool(got)
                if got is None:
                    break
            os.close(fd)
        wall = time.monotonic() - started
        exit_code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        if timed_out:
            exit_code, sig = None, signal.SIGKILL
        timed_out |= os.WIFSIGNALED(program_status) and os.WTERMSIG(program_status) == signal.SIGXCPU
        memory_exceeded = self.oom_kills() > oom_before
        result = {
            "name": step.get("name", ""),
            "exit_code": exit_code,
            "signal": sig,
            "timed_out": timed_out,
            "memory_exceeded": memory_exceeded,
            "output_truncated": truncated,
            "wall_s": round(wall, 6),
        }
        return result, bytes(streams[out_r]), bytes(streams[err_r])

    def _spawn(
        self, argv: list[str], env: dict, limits: dict, timeout: float, fds: tuple, uid: int, cwd: str,
        oom_score: int,
    ) -> int:  # fmt: skip
        """Fork a child that execs `argv` as `uid` in `cwd` with `fds` as its descriptors 0, 1..."""
        pid = os.fork()
        if pid == 0:  # the child: never returns
            self._exec_child(argv, env, limits, timeout, fds, uid, cwd, oom_score)
        return pid

    def _exec_child(
        self, argv: list[str], env: dict, limits: dict, timeout: float, fds: tuple, uid: int, cwd: str,
        oom_score: int,
    ) -> None:  # fmt: skip
        try:
            os.setsid()  # its own session and process group, killed as one on timeout
            with open("/proc/self/oom_score_adj", "w") as f:  # the OOM killer picks steps first
                f.write(str(oom_score))
            # Out of the way first, so no source is overwritten by an earlier target.
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]
            for target, fd in enumerate(high):
                os.dup2(fd, target)
            os.closerange(len(fds), 65536)
            cpu = limits.get("cpu_time_s") or math.ceil(timeout)
            cpu = max(1, math.ceil(cpu))
            memory = int(limits["memory_mb"]) << 20
            rlimits = [
                (resource.RLIMIT_CPU, cpu, cpu + 1),
                (resource.RLIMIT_FSIZE, int(limits["file_size_mb"]) << 20, int(limits["file_size_mb"]) << 20),
                (resource.RLIMIT_NPROC, int(limits["max_processes"]), int(limits["max_processes"])),
                (resource.RLIMIT_CORE, 0, 0),
            ]
            if limits.get("limit_address_space", True):
                rlimits.append((resource.RLIMIT_AS, memory, memory))
            for which, soft, hard in rlimits:
                resource.setrlimit(which, (soft, hard))
            signal.pthread_sigmask(signal.SIG_SETMASK, [])
            for sig in (signal.SIGPIPE, signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            self._drop_privileges(uid)
            os.chdir(cwd)
            os.execvpe(argv[0], argv, env)
        except BaseException as err:  # noqa: BLE001 - report anything, never return into the server
            with contextlib.suppress(OSError):
                os.write(2, f"sandbox: cannot start {argv[:1]}: {err}\n".encode())
            os._exit(127)

    @staticmethod
    def _read_into(fd: int, streams: dict[int, bytearray], cap: int) -> bool | None:
        """Read one chunk: None at EOF, True when bytes were dropped over the cap, else False."""
        try:
            chunk = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return False
        if not chunk:
            return None
        buffer = streams[fd]
        room = cap - len(buffer)
        if room > 0:
            buffer += chunk[:room]
        return len(chunk) > room

    def _wait(self, pid: int) -> int:
        if pid in self.exited:
            return self.exited.pop(pid)
        try:
            return os.waitpid(pid, 0)[1]
        except ChildProcessError:
            return self.exited.pop(pid, 0)

    # -- cleaning

    def kill_all(self, attempts: int = 2000) -> bool:
        """SIGKILL every other process of this pid namespace and reap them; True when none is left.

        As pid 1, `kill(-1)` reaches every process but this one; repeating it catches processes
        forked while the previous sweep ran (a fork bomb), which the pids cgroup keeps finite.
        """
        for _ in range(attempts):
            self._reap()
            try:
                os.kill(-1, signal.SIGKILL)
            except ProcessLookupError:  # ESRCH: no other process exists
                return True
            time.sleep(0.0005)
        self._reap()
        return False

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.exited[pid] = status

    def reset(self) -> str | None:
        """Kill everything, then wipe the writable places as the sandbox user; an error or None."""
        if not self.kill_all():
            return "processes survived kill(-1)"
        self.exited.clear()
        return self.as_sandbox_user(lambda: wipe([self.workdir, *WIPE_DIRS], self.uid))

    def as_sandbox_user(self, work: Callable[[], None]) -> str | None:
        """Run `work` here with the sandbox uid as real and effective uid and gid; its error or None.

        The saved ids stay 0, so the server switches back afterwards; no fork is paid per request.
        Safe because no process of the sandbox uid exists at these moments (every one was killed
        at the end of the last step), so none can signal or trace the server meanwhile.
        """
        switch = os.getuid() != self.uid
        error = None
        if switch:
            os.setresgid(self.uid, self.uid, 0)
            os.setresuid(self.uid, self.uid, 0)
        try:
            work()
        except Exception as err:  # noqa: BLE001 - reported to the host, which replaces the sandbox
            error = f"{type(err).__name__}: {err}"[:4000]
        finally:
            if switch:
                os.setresuid(0, 0, 0)
                os.setresgid(0, 0, 0)
        return error

    def _drop_privileges(self, uid: int) -> None:
        """Become `uid` with no supplementary groups (a jail of an unprivileged user already
        runs as its one uid and keeps it)."""
        if os.getuid() == uid:
            return
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)

    def oom_kills(self) -> int:
        """How many times the kernel's OOM killer struck in this sandbox's memory cgroup."""
        for path in self.oom_files:
            try:
                with open(path) as f:
                    for line in f:
                        if line.startswith("oom_kill "):
                            return int(line.split()[1])
            except OSError:
                continue
        return 0


def write_files(workdir: str, files: list[tuple[str, bytes]]) -> None:
    """Write the request's files into the (empty) work directory, as the sandbox user."""
    if os.listdir(workdir):
        raise RuntimeError("work directory is not empty")
    for name, content in files:
        if not safe_relative_path(name):
            raise ValueError(f"unsafe file name {name!r}")
        path = os.path.join(workdir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        # O_NOFOLLOW | O_EXCL: never through a symlink, never over an existing file.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            write_all(fd, content)
        finally:
            os.close(fd)


def wipe(dirs: list[str], uid: int) -> None:
    """Empty each directory and remove the uid's SysV IPC objects; raise if anything is left."""
    for top in dirs:
        if not os.path.isdir(top):
            continue
        for entry in os.listdir(top):
            _remove(os.path.join(top, entry))
    _remove_sysv_ipc(uid)
    _clear_keyrings()
    left = [f"{top}/{name}" for top in dirs if os.path.isdir(top) for name in os.listdir(top)]
    left = [path for path in left if os.lstat(path).st_uid == uid]
    if left:
        raise RuntimeError(f"could not remove {left[:5]}")


def _remove(path: str) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        with contextlib.suppress(OSError):
            os.chmod(path, 0o700)  # a directory made unreadable by its owner is still its owner's
        with contextlib.suppress(FileNotFoundError, PermissionError):
            for entry in os.listdir(path):
                _remove(os.path.join(path, entry))
        with contextlib.suppress(FileNotFoundError, PermissionError):
            os.rmdir(path)
    else:
        with contextlib.suppress(FileNotFoundError, PermissionError):
            os.unlink(path)


def _remove_sysv_ipc(uid: int) -> None:
    """Shared memory, semaphores and message queues outlive processes: remove the uid's own."""
    libc = _libc()
    ipc_rmid = 0
    for kind, remove in (("shm", libc.shmctl), ("sem", libc.semctl), ("msg", libc.msgctl)):
        try:
            with open(f"/proc/sysvipc/{kind}") as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            ident, owner = int(fields[1]), _sysv_uid(kind, fields)
            if owner == uid:
                if kind == "sem":
                    remove(ident, 0, ipc_rmid)
                else:
                    remove(ident, ipc_rmid, None)


def _clear_keyrings() -> None:
    """The kernel keeps a keyring per uid across processes: empty the uid's own keyrings.

    Docker's default seccomp profile already denies keyctl (then this fails quietly); a bwrap
    jail has no such filter.
    """
    number = {"x86_64": 250, "aarch64": 219}.get(os.uname().machine)  # keyctl(2)
    if number is None:
        return
    libc = _libc()
    keyctl_clear, user_keyring, user_session_keyring = 7, -4, -5
    for keyring in (user_keyring, user_session_keyring):
        libc.syscall(number, keyctl_clear, keyring)


_LIBC: ctypes.CDLL | None = None


def _libc() -> ctypes.CDLL:
    global _LIBC
    if _LIBC is None:
        _LIBC = ctypes.CDLL(None, use_errno=True)
    return _LIBC


def _sysv_uid(kind: str, fields: list[str]) -> int:
    # /proc/sysvipc/<kind> column of the owner uid (see proc(5)).
    column = {"shm": 7, "sem": 4, "msg": 7}[kind]
    return int(fields[column])


# ---------------------------------------------------------------- entry point


def serve_socket(server: Server, path: str) -> None:
    """Listen on a unix socket; serve one connection at a time, one message at a time."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path + ".tmp")
    os.chmod(path + ".tmp", 0o600)
    listener.listen(4)
    os.rename(path + ".tmp", path)  # appears only once it accepts connections
    while True:
        conn, _ = listener.accept()
        with conn:
            serve_fds(server, conn.fileno(), conn.fileno())


def serve_fds(server: Server, read_fd: int, write_fd: int) -> None:
    """Serve messages from `read_fd` until it closes, answering on `write_fd`."""
    read_exact = fd_reader(read_fd)
    while True:
        try:
            header, blobs = decode_message(read_exact)
        except (EOFError, ConnectionError):
            return
        except ValueError as err:
            write_all(write_fd, encode_message({"ok": False, "error": f"bad message: {err}"}, []))
            return
        reply, out = server.handle(header, blobs)
        try:
            write_all(write_fd, encode_message(reply, out))
        except (BrokenPipeError, ConnectionError):
            return


def main() -> None:
    """Start as pid 1 of a sandbox: clean the sandbox, then serve."""
    parser = argparse.ArgumentParser(description="assay sandbox fork server")
    parser.add_argument("--uid", type=int, required=True)
    parser.add_argument("--workdir", default="/work")
    parser.add_argument("--socket", help="unix socket path; without it, serve stdin/stdout")
    args = parser.parse_args()
    if args.uid <= 0:
        sys.exit("the sandbox uid must not be root")
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    if os.getuid() == 0:
        os.setgroups([])  # the server switches to the sandbox uid for file work: no extra groups
    _libc()
    server = Server(args.uid, args.workdir)
    error = server.reset()
    if error:
        sys.exit(f"sandbox reset failed at start: {error}")
    if args.socket:
        serve_socket(server, args.socket)
    else:
        # Keep the channel on fresh descriptors; steps never see it (they get their own pipes).
        read_fd, write_fd = os.dup(0), os.dup(1)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        serve_fds(server, read_fd, write_fd)


if __name__ == "__main__":
    main()
