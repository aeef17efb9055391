"""Hostile programs against the Docker sandbox: one test per isolation property.

Every test has a time bound (a parameter) and ends with the host health check of the
`host_health` fixture: no process of the sandbox left on the host, no container leaked or lost,
host memory and disk fine.
"""

import http.server
import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from timing import bound

from sandbox.execution import ExecRequest, ExecResult, Limits, Step, StepResult
from sandbox.validation import InvalidRequest

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("host_health")]


def python(sandbox, code: str, limits: Limits | None = None, **step) -> tuple[StepResult, float]:  # noqa: ANN001
    """Run `code` as main.py and return its step result and the wall time of the whole call."""
    request = ExecRequest(
        files=(("main.py", code.encode()),),
        steps=(Step("run", ("python3", "main.py"), **step),),
        limits=limits or Limits(wall_timeout_s=5),
    )
    started = time.monotonic()
    result = sandbox.execute(request)
    elapsed = time.monotonic() - started
    assert result.error is None, result.error
    assert len(result.steps) == 1
    return result.steps[0], elapsed


def assert_healthy_next_run(sandbox) -> None:  # noqa: ANN001
    """A plain program still runs correctly after the hostile one."""
    step, _ = python(sandbox, "print(6 * 7)")
    assert (step.exit_code, step.stdout) == (0, b"42\n")


# ---------------------------------------------------------------- time and processes


@pytest.mark.parametrize("bound_s", [4.0])
def test_cpu_spin_is_killed_at_the_wall_timeout(docker_sandbox, bound_s: float) -> None:
    # A CPU-time limit above the wall timeout, so the wall clock (not SIGXCPU) is what stops it.
    limits = Limits(wall_timeout_s=1, cpu_time_s=10)
    step, elapsed = python(docker_sandbox, "while True:\n    pass\n", limits)
    assert step.timed_out and step.signal == 9 and step.exit_code is None
    assert 1.0 <= step.wall_s < bound(3.0)
    assert elapsed < bound(bound_s)
    assert_healthy_next_run(docker_sandbox)


@pytest.mark.parametrize("bound_s", [4.0])
def test_cpu_time_limit_stops_a_spin_before_the_wall_timeout(docker_sandbox, bound_s: float) -> None:
    step, elapsed = python(docker_sandbox, "while True:\n    pass\n", Limits(wall_timeout_s=10, cpu_time_s=1))
    assert step.timed_out and step.signal in (9, 24)  # SIGXCPU at the soft limit, SIGKILL at the hard one
    assert elapsed < bound(bound_s)


@pytest.mark.parametrize("bound_s", [4.0])
def test_sleep_past_the_timeout_is_killed(docker_sandbox, bound_s: float) -> None:
    step, elapsed = python(
        docker_sandbox, "import time\nprint('start', flush=True)\ntime.sleep(60)\n", Limits(wall_timeout_s=1)
    )
    assert step.timed_out and step.signal == 9
    assert step.stdout == b"start\n"  # output written before the kill is kept
    assert elapsed < bound(bound_s)


@pytest.mark.parametrize("bound_s", [4.0])
def test_step_timeout_overrides_the_limit(docker_sandbox, bound_s: float) -> None:
    step, elapsed = python(
        docker_sandbox, "import time\ntime.sleep(60)\n", Limits(wall_timeout_s=30), timeout_s=0.5
    )
    assert step.timed_out and 0.5 <= step.wall_s < bound(2.5)
    assert elapsed < bound(bound_s)


# Forked first, before the bomb: samples the sandbox uid's tasks (processes and threads, what
# RLIMIT_NPROC counts) for a second and prints each new peak at once (the step may end early).
PEAK_WATCHER = (
    "import os, time\n"
    "def tasks():\n"
    "    n = 0\n"
    "    for pid in filter(str.isdigit, os.listdir('/proc')):\n"
    "        try:\n"
    "            if os.stat(f'/proc/{pid}').st_uid == os.getuid():\n"
    "                n += len(os.listdir(f'/proc/{pid}/task'))\n"
    "        except OSError:\n"
    "            pass\n"
    "    return n\n"
    "if os.fork() == 0:\n"
    "    peak, start = 0, time.monotonic()\n"
    "    while time.monotonic() - start < 1.0:\n"
    "        if (now := tasks()) > peak:\n"
    "            peak = now\n"
    "            print('peak', peak, flush=True)\n"
    "    os._exit(0)\n"
)
FORK_BOMBS = {
    "python": PEAK_WATCHER + "while True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
    # dash gives up at its first failed fork, so the bomb is relaunched until the timeout.
    "shell": PEAK_WATCHER
    + "import subprocess\n"
    + "while True:\n"
    + "    try:\n"
    + "        subprocess.run(['sh', '-c', 'b() { b | b; }; b'])\n"
    + "    except OSError:\n"
    + "        pass\n",
}


def fork_bomb_peak(step: StepResult) -> int:
    """The highest task count the bomb's watcher printed."""
    lines = step.stdout.splitlines()
    assert lines and all(line.startswith(b"peak ") for line in lines), step
    return int(lines[-1].split()[1])


@pytest.mark.parametrize(("kind", "bound_s"), [("python", 8.0), ("shell", 8.0)])
def test_fork_bomb_is_contained(docker_sandbox, kind: str, bound_s: float) -> None:
    limit = 32
    step, elapsed = python(docker_sandbox, FORK_BOMBS[kind], Limits(wall_timeout_s=2, max_processes=limit))
    # Both bombs spin on failed forks until the timeout; what is left is swept when the step ends.
    assert step.timed_out, step
    # RLIMIT_NPROC, not the container's pids cgroup (limit + 16), is what stopped it, and the bomb
    # did reach it.
    assert limit // 2 < fork_bomb_peak(step) <= limit, step.stdout
    assert elapsed < bound(bound_s)
    assert_healthy_next_run(docker_sandbox)


SURVIVORS = {
    "double_fork": (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(300)\n"
        "    os._exit(0)\n"
        "os.wait()\n"
    ),
    "setsid": (
        "import subprocess\n"
        "subprocess.Popen(['sleep', '300'], start_new_session=True, stdout=subprocess.DEVNULL,\n"
        "                 stderr=subprocess.DEVNULL)\n"
    ),
    "nohup": "import os\nos.system('nohup sleep 300 >/dev/null 2>&1 &')\n",
    "holds_stdout": "import subprocess\nsubprocess.Popen(['sleep', '300'], start_new_session=True)\n",
}

LIST_PROCESSES = (
    "import os\n"
    "others = []\n"
    "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
    "    try:\n"
    "        cmd = open(f'/proc/{pid}/cmdline', 'rb').read()\n"
    "    except OSError:\n"
    "        continue\n"
    "    if int(pid) not in (1, os.getpid()):\n"
    "        others.append(cmd)\n"
    "print(others)\n"
)


@pytest.mark.parametrize(("kind", "bound_s"), [(kind, 6.0) for kind in SURVIVORS])
def test_processes_that_outlive_the_run_are_killed(docker_sandbox, kind: str, bound_s: float) -> None:
    started = time.monotonic()
    step, _ = python(docker_sandbox, SURVIVORS[kind])
    assert step.exit_code == 0 and not step.timed_out  # the step ended when its main process did
    # No later run, on any container of the pool, sees anything but itself and the server.
    for _ in range(docker_sandbox.config.pool_size):
        listing, _ = python(docker_sandbox, LIST_PROCESSES)
        assert listing.stdout == b"[]\n", listing.stdout
    assert time.monotonic() - started < bound(bound_s)


# ---------------------------------------------------------------- memory, output, disk


@pytest.mark.parametrize("bound_s", [5.0])
def test_memory_bomb_hits_the_address_space_limit(docker_sandbox, bound_s: float) -> None:
    step, elapsed = python(docker_sandbox, "x = bytearray(2_000_000_000)\n", Limits(memory_mb=256))
    assert step.exit_code == 1 and b"MemoryError" in step.stderr
    assert elapsed < bound(bound_s)
    assert_healthy_next_run(docker_sandbox)


@pytest.mark.parametrize("bound_s", [8.0])
def test_memory_bomb_without_rlimit_is_oom_killed_and_reported(docker_sandbox, bound_s: float) -> None:
    code = "x = []\nwhile True:\n    x.append(bytearray(10_000_000))\n"
    step, elapsed = python(docker_sandbox, code, Limits(memory_mb=200, limit_address_space=False))
    assert step.memory_exceeded and step.signal == 9 and not step.timed_out
    assert elapsed < bound(bound_s)
    assert_healthy_next_run(docker_sandbox)  # back on the default limit


@pytest.mark.parametrize("bound_s", [6.0])
def test_output_bomb_is_capped_while_it_streams(docker_sandbox, bound_s: float) -> None:
    code = "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n    sys.stderr.write('y' * 65536)\n"
    step, elapsed = python(docker_sandbox, code, Limits(wall_timeout_s=2, output_bytes=100_000))
    assert step.output_truncated and step.timed_out
    assert step.stdout == b"x" * 100_000 and step.stderr == b"y" * 100_000
    assert elapsed < bound(bound_s)


@pytest.mark.parametrize("bound_s", [6.0])
def test_large_output_on_both_streams_does_not_deadlock(docker_sandbox, bound_s: float) -> None:
    # 5 MB to stdout and stderr interleaved: a reader that drains one pipe at a time would block.
    code = (
        "import sys\n"
        "for i in range(80):\n"
        "    sys.stdout.write(chr(97 + i % 26) * 65536)\n"
        "    sys.stderr.write(chr(65 + i % 26) * 65536)\n"
    )
    step, elapsed = python(docker_sandbox, code, Limits(output_bytes=6_000_000))
    assert step.exit_code == 0 and not step.output_truncated
    assert step.stdout == b"".join(bytes([97 + i % 26]) * 65536 for i in range(80))
    assert step.stderr == b"".join(bytes([65 + i % 26]) * 65536 for i in range(80))
    assert elapsed < bound(bound_s)


@pytest.mark.parametrize("bound_s", [4.0])
def test_large_stdin_is_fed_without_deadlock(docker_sandbox, bound_s: float) -> None:
    data = bytes(range(256)) * 20_000  # 5 MB, more than any pipe buffer
    code = "import sys, hashlib\nprint(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())\n"
    step, elapsed = python(docker_sandbox, code, Limits(output_bytes=10_000), stdin=data)
    import hashlib

    assert step.stdout.decode().strip() == hashlib.sha256(data).hexdigest()
    assert elapsed < bound(bound_s)


DISK_FILL = (
    "import os, sys\n"
    "target = sys.argv[1] if len(sys.argv) > 1 else '{where}'\n"
    "written = 0\n"
    "try:\n"
    "    with open(os.path.join(target, 'fill'), 'wb') as f:\n"
    "        while True:\n"
    "            f.write(b'x' * (1 << 20))\n"
    "            f.flush()\n"
    "            written += 1\n"
    "except OSError as err:\n"
    "    print(written, err.errno)\n"
)


@pytest.mark.parametrize(("where", "bound_s"), [("/work", 8.0), ("/tmp", 8.0), ("/dev/shm", 8.0)])
def test_disk_fill_stops_at_the_tmpfs_size_and_is_wiped(docker_sandbox, where: str, bound_s: float) -> None:
    started = time.monotonic()
    limits = Limits(file_size_mb=1024, wall_timeout_s=5)
    step, _ = python(docker_sandbox, DISK_FILL.format(where=where), limits)
    written, errno = map(int, step.stdout.split())
    assert errno == 28  # ENOSPC: the tmpfs is full, the host disk is not touched
    assert written <= docker_sandbox.config.limits.workdir_mb
    for _ in range(docker_sandbox.config.pool_size):
        listing, _ = python(docker_sandbox, f"import os\nprint(sorted(os.listdir('{where}')))")
        assert listing.stdout in (b"[]\n", b"['main.py']\n")
    assert time.monotonic() - started < bound(bound_s)


@pytest.mark.parametrize("bound_s", [4.0])
def test_file_size_limit(docker_sandbox, bound_s: float) -> None:
    code = "f = open('big', 'wb')\nf.write(b'x' * (3 << 20))\n"
    step, elapsed = python(docker_sandbox, code, Limits(file_size_mb=1))
    assert step.exit_code != 0 and (step.signal == 25 or b"File too large" in step.stderr)  # SIGXFSZ
    assert elapsed < bound(bound_s)


# ---------------------------------------------------------------- state leaking between runs


@pytest.fixture(scope="module")
def single_sandbox() -> Iterator:
    """A pool of one container, so consecutive requests surely land on the same container."""
    from sandbox.config import SandboxConfig
    from sandbox.docker_backend import DockerSandbox

    sandbox = DockerSandbox(SandboxConfig(backend="docker", pool_size=1))
    yield sandbox
    sandbox.close()


# Plants state everywhere a later run could find it, and reports each plant step: "ok", or the
# errno name of the refusal. The later run (SNOOP) must find none of it.
PLANT = (
    "import ctypes, errno, json, os\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "done = {}\n"
    "def result(name, value):\n"
    "    done[name] = 'ok' if value >= 0 else errno.errorcode.get(ctypes.get_errno(), 'unknown')\n"
    "for d in ('/tmp', '/dev/shm', '/work'):\n"
    "    open(os.path.join(d, 'planted'), 'w').write('secret')\n"
    "    done[d] = 'ok' if open(os.path.join(d, 'planted')).read() == 'secret' else 'lost'\n"
    "os.makedirs('/tmp/locked/inner')\n"
    "os.chmod('/tmp/locked', 0)\n"
    "done['/tmp/locked'] = 'ok' if os.stat('/tmp/locked').st_mode & 0o777 == 0 else 'chmod'\n"
    "result('shm', libc.shmget(0x1234, 4096, 0o1666))\n"
    "result('msg', libc.msgget(0x1235, 0o1666))\n"
    "result('sem', libc.semget(0x1236, 1, 0o1666))\n"
    "counts = [open(f'/proc/sysvipc/{k}').read().count(chr(10)) - 1 for k in ('shm', 'msg', 'sem')]\n"
    "done['sysvipc_listed'] = 'ok' if counts == [1, 1, 1] else str(counts)\n"
    "# A POSIX message queue outlives its creator too.\n"
    "rt = ctypes.CDLL('librt.so.1', use_errno=True)\n"
    "result('mqueue', rt.mq_open(b'/planted', os.O_CREAT | os.O_RDWR, 0o600, None))\n"
    "result('key', libc.syscall(248, b'user', b'planted', b'secret', 6, -4))  # add_key: the uid's keyring\n"
    "if done['key'] == 'ok':  # KEYCTL_SEARCH of the uid's keyring finds it\n"
    "    result('key_found', libc.syscall(250, 10, -4, b'user', b'planted', 0))\n"
    "print(json.dumps(done))\n"
)
PLANTED = ["/tmp", "/dev/shm", "/work", "/tmp/locked", "shm", "msg", "sem", "sysvipc_listed", "mqueue"]
SNOOP = (
    "import ctypes, os\n"
    "print(sorted(os.listdir('/tmp')), sorted(os.listdir('/dev/shm')), sorted(os.listdir('/work')))\n"
    "print([open(f'/proc/sysvipc/{k}').read().count(chr(10)) - 1 for k in ('shm', 'msg', 'sem')])\n"
    "print(os.listdir('/dev/mqueue') if os.path.isdir('/dev/mqueue') else [])\n"
    "print(ctypes.CDLL('librt.so.1').mq_open(b'/planted', os.O_RDWR, 0o600, None) < 0)  # the queue is gone\n"
    "print(ctypes.CDLL(None).syscall(250, 10, -4, b'user', b'planted', 0) < 0)  # no key in the keyring\n"
)
SNOOPED_NOTHING = b"[] [] ['main.py']\n[0, 0, 0]\n[]\nTrue\nTrue\n"


def assert_all_planted(step: StepResult, *, keyring: str) -> None:
    """Every plant step succeeded, so "the next run finds nothing" proves something.

    Args:
        keyring: "ok" where the sandbox lets a program add a key (then it must find it too), or
            the errno name with which the sandbox refuses keyring calls outright.
    """
    assert step.exit_code == 0, step
    done = json.loads(step.stdout)
    expected = dict.fromkeys(PLANTED, "ok") | {"key": keyring}
    if keyring == "ok":
        expected["key_found"] = "ok"
    assert done == expected, done


@pytest.mark.parametrize("bound_s", [4.0])
def test_no_state_leaks_to_the_next_run(single_sandbox, bound_s: float) -> None:
    started = time.monotonic()
    planted, _ = python(single_sandbox, PLANT)
    # Docker's seccomp profile refuses the keyring syscalls: nothing can be planted there at all.
    assert_all_planted(planted, keyring="EPERM")
    snoop, _ = python(single_sandbox, SNOOP)
    assert snoop.stdout == SNOOPED_NOTHING, snoop
    assert time.monotonic() - started < bound(bound_s)


# ---------------------------------------------------------------- network


@pytest.fixture(scope="module")
def host_http_server() -> Iterator[int]:
    """An HTTP server on all host interfaces (loopback and the docker0 bridge)."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def docker0_ip() -> str:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "docker0"], capture_output=True, text=True).stdout
    return out.split()[3].split("/")[0] if out else "172.17.0.1"


def probe(success: str = "ALLOWED") -> str:
    """The start of a probe program: `attempt(name, fn)` records `success` when fn runs and the
    exception's type when it is refused; the probe ends by printing `json.dumps(results)`."""
    return f"""
import json
results = {{}}
def attempt(name, fn):
    try:
        fn()
        results[name] = "{success}"
    except Exception as err:
        results[name] = type(err).__name__
"""


NETWORK_PROBE = (
    probe("REACHED")
    + """
import socket
def http(host, port):
    s = socket.create_connection((host, port), timeout=2)
    s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
    if not s.recv(10):
        raise ConnectionError("empty")
attempt("loopback", lambda: http("127.0.0.1", PORT))
attempt("bridge", lambda: http("BRIDGE", PORT))
attempt("metadata", lambda: http("169.254.169.254", 80))
attempt("dns", lambda: socket.getaddrinfo("deb.debian.org", 80))
attempt("public_ip", lambda: http("1.1.1.1", 80))
attempt("raw", lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
attempt("packet", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW))
print(json.dumps(results))
"""
)


@pytest.mark.parametrize("bound_s", [8.0])
def test_no_network_at_all(docker_sandbox, host_http_server: int, bound_s: float) -> None:
    # The host server answers from the host, so a failure inside is the sandbox's doing.
    with socket.create_connection((docker0_ip(), host_http_server), timeout=2):
        pass
    code = NETWORK_PROBE.replace("PORT", str(host_http_server)).replace("BRIDGE", docker0_ip())
    step, elapsed = python(docker_sandbox, code)
    results = json.loads(step.stdout)
    assert set(results) == {"loopback", "bridge", "metadata", "dns", "public_ip", "raw", "packet"}
    assert "REACHED" not in results.values(), results
    assert elapsed < bound(bound_s)


# ---------------------------------------------------------------- file system


@pytest.mark.parametrize(
    ("name", "bound_s"), [("../escape.py", 1.0), ("/etc/x", 1.0), ("a/../../b", 1.0), ("", 1.0), ("./a", 1.0)]
)
def test_file_names_escaping_the_work_dir_are_rejected(docker_sandbox, name: str, bound_s: float) -> None:
    started = time.monotonic()
    with pytest.raises(InvalidRequest, match="file name"):
        docker_sandbox.execute(ExecRequest(files=((name, b"x"),), steps=(Step("run", ("true",)),)))
    assert time.monotonic() - started < bound(bound_s)


FS_PROBE = (
    probe()
    + r"""
import os
attempt("read_proc1_environ", lambda: open("/proc/1/environ", "rb").read())
attempt("docker_sock", lambda: os.stat("/var/run/docker.sock"))
attempt("run_docker_sock", lambda: os.stat("/run/docker.sock"))
attempt("server_socket_dir", lambda: os.listdir("/run/assay"))
attempt("write_etc", lambda: open("/etc/evil", "w"))
attempt("write_usr", lambda: open("/usr/bin/evil", "w"))
attempt("write_root", lambda: open("/evil", "w"))
attempt("write_server", lambda: open("/opt/assay/server.py", "a"))
attempt("read_shadow", lambda: open("/etc/shadow").read())
os.symlink("/etc/shadow", "link")
attempt("read_shadow_via_symlink", lambda: open("link").read())
os.symlink("/proc/1/root/etc/shadow", "link2")
attempt("proc1_root", lambda: open("link2").read())
def mount():
    if os.system("mount -t tmpfs none /mnt 2>/dev/null") != 0:
        raise PermissionError("mount failed")
attempt("mount", mount)
print(json.dumps(results))
"""
)


@pytest.mark.parametrize("bound_s", [4.0])
def test_file_system_escapes_fail(docker_sandbox, bound_s: float) -> None:
    step, elapsed = python(docker_sandbox, FS_PROBE)
    results = json.loads(step.stdout)
    assert len(results) == 12
    assert "ALLOWED" not in results.values(), results
    assert results["docker_sock"] == results["run_docker_sock"] == "FileNotFoundError"
    assert elapsed < bound(bound_s)


# ---------------------------------------------------------------- privilege


PRIVILEGE_PROBE = (
    probe()
    + r"""
import ctypes, os, signal, subprocess
libc = ctypes.CDLL(None, use_errno=True)
def ptrace_pid1():
    if libc.ptrace(16, 1, None, None) != 0:  # PTRACE_ATTACH
        raise PermissionError(ctypes.get_errno())
def su():
    if subprocess.run(["su", "-c", "id"], input=b"", capture_output=True).returncode == 0:
        return
    raise PermissionError("su failed")
attempt("kill_pid1", lambda: os.kill(1, signal.SIGKILL))
attempt("term_pid1", lambda: os.kill(1, signal.SIGTERM))
attempt("ptrace_pid1", ptrace_pid1)
attempt("setuid_root", lambda: os.setuid(0))
attempt("setgid_root", lambda: os.setgid(0))
attempt("su", su)
status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line)
print(json.dumps({"results": results, "uid": os.getuid(), "groups": os.getgroups(),
                  "cap_eff": status["CapEff"].strip(), "cap_prm": status["CapPrm"].strip(),
                  "no_new_privs": status["NoNewPrivs"].strip()}))
"""
)


@pytest.mark.parametrize("bound_s", [6.0])
def test_no_privilege_to_gain(docker_sandbox, bound_s: float) -> None:
    step, elapsed = python(docker_sandbox, PRIVILEGE_PROBE)
    report = json.loads(step.stdout)
    assert "ALLOWED" not in report["results"].values(), report
    assert report["uid"] != 0 and report["groups"] == []
    assert report["cap_eff"] == report["cap_prm"] == "0000000000000000"
    assert report["no_new_privs"] == "1"
    assert elapsed < bound(bound_s)
    assert_healthy_next_run(docker_sandbox)  # pid 1 survived


# ---------------------------------------------------------------- output encoding, crashes


@pytest.mark.parametrize("bound_s", [4.0])
def test_binary_and_invalid_utf8_output_come_back_intact(docker_sandbox, bound_s: float) -> None:
    code = (
        "import sys\n"
        "sys.stdout.buffer.write(bytes(range(256)) * 3)\n"
        "sys.stderr.buffer.write(b'\\xff\\xfe\\x00bad')\n"
    )
    step, elapsed = python(docker_sandbox, code)
    assert step.stdout == bytes(range(256)) * 3
    assert step.stderr == b"\xff\xfe\x00bad"
    assert elapsed < bound(bound_s)


@pytest.mark.parametrize("bound_s", [30.0])
def test_deep_recursion_is_reported_as_a_signal_not_a_hang(docker_sandbox, bound_s: float) -> None:
    source = (
        b"int f(int n) { volatile char pad[256]; pad[0] = n; return f(n + 1) + pad[0]; }\n"
        b"int main() { return f(0); }\n"
    )
    request = ExecRequest(
        files=(("deep.cpp", source),),
        steps=(Step("compile", ("g++", "-O0", "-o", "deep", "deep.cpp")), Step("run", ("./deep",))),
        limits=Limits(wall_timeout_s=20),
    )
    started = time.monotonic()
    result: ExecResult = docker_sandbox.execute(request)
    assert [s.name for s in result.steps] == ["compile", "run"]
    compile_step, run_step = result.steps
    assert compile_step.exit_code == 0, compile_step.stderr
    assert run_step.signal == 11 and run_step.exit_code is None and not run_step.timed_out  # SIGSEGV
    assert time.monotonic() - started < bound(bound_s)


@pytest.mark.parametrize("bound_s", [4.0])
def test_python_recursion_error_is_an_exit_not_a_hang(docker_sandbox, bound_s: float) -> None:
    step, elapsed = python(docker_sandbox, "def f(n):\n    return f(n + 1)\nf(0)\n")
    assert step.exit_code == 1 and b"RecursionError" in step.stderr
    assert elapsed < bound(bound_s)


@pytest.mark.parametrize("bound_s", [4.0])
def test_a_failed_step_stops_the_request(docker_sandbox, bound_s: float) -> None:
    request = ExecRequest(
        files=(),
        steps=(Step("first", ("sh", "-c", "exit 3")), Step("second", ("sh", "-c", "echo never"))),
    )
    started = time.monotonic()
    result = docker_sandbox.execute(request)
    assert [(s.name, s.exit_code) for s in result.steps] == [("first", 3)]
    assert not result.ok
    missing = docker_sandbox.execute(ExecRequest(files=(), steps=(Step("run", ("no-such-binary",)),)))
    assert missing.steps[0].exit_code == 127 and b"no-such-binary" in missing.steps[0].stderr
    assert time.monotonic() - started < bound(bound_s)


# ---------------------------------------------------------------- concurrency


@pytest.mark.parametrize(("count", "bound_s"), [(50, 20.0)])
def test_concurrent_executions_are_all_correct(docker_sandbox, count: int, bound_s: float) -> None:
    def one(i: int) -> bytes:
        code = (
            "import os, sys\n"
            f"print({i} * {i}, open('input.txt').read(), sys.stdin.read(), sorted(os.listdir('.')))"
        )
        request = ExecRequest(
            files=(("main.py", code.encode()), ("input.txt", f"in{i}".encode())),
            steps=(Step("run", ("python3", "main.py"), stdin=f"stdin{i}".encode()),),
        )
        result = docker_sandbox.execute(request)
        assert result.ok, result
        return result.steps[0].stdout

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=count) as pool:
        outputs = list(pool.map(one, range(count)))
    assert outputs == [f"{i * i} in{i} stdin{i} ['input.txt', 'main.py']\n".encode() for i in range(count)]
    assert time.monotonic() - started < bound(bound_s)
