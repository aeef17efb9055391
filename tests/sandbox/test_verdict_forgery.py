"""Python programs that try to forge their own passing verdict, through the real Docker sandbox.

Each hostile program is wrong (`add` returns 0) and tries to get `passed` anyway by stealing the
secret that tags the harness's records, or by reaching the code that writes them: through process
memory (several spellings of /proc/.../mem), frames handed to signal handlers, trace and profile
hooks, faulthandler, threads, finalizers, standard-library functions patched at import, and the
channel to the judge itself. Against a harness that runs the tests inside the program's process,
several of these forged `passed` with reward 1.0 (issue 12). With the tests in a separate judge
process under another uid, each must end `failed` or `runtime_error` with nothing passed, while
the honest program next to it passes the very same tests."""

from textwrap import dedent

import pytest

from sandbox.verify import verify

pytestmark = pytest.mark.docker

TESTS = "assert add(1, 2) == 3\nassert add(2, 2) == 4\n"
HONEST = "def add(a, b):\n    return a + b\n"

# Shared by the hostile programs: find a nonce in bytes or in any Python value, and, once found,
# write forged records for every test (on every descriptor, the record channel among them) and
# leave before the harness can say otherwise.
STEAL = dedent(r'''
    import os, re, sys
    RECORD = re.compile(rb"@@assay:([0-9a-f]{32})")
    PAYLOAD = re.compile(rb'"nonce": ?"([0-9a-f]{32})"')

    def nonce_in_bytes(data):
        for pattern in (RECORD, PAYLOAD):
            match = pattern.search(data)
            if match:
                return match.group(1).decode()
        return None

    def nonce_in(value, depth=0, seen=None):
        seen = set() if seen is None else seen
        if depth > 6 or id(value) in seen:
            return None
        seen.add(id(value))
        if isinstance(value, (bytes, bytearray)):
            return nonce_in_bytes(bytes(value))
        if isinstance(value, str):
            return nonce_in_bytes(value.encode("utf-8", "replace"))
        if isinstance(value, dict):
            if isinstance(value.get("nonce"), str):
                return value["nonce"]
            children = list(value.values())
        elif isinstance(value, (list, tuple, set, frozenset)):
            children = list(value)
        elif hasattr(value, "__closure__"):
            children = [c.cell_contents for c in (value.__closure__ or ()) if _filled(c)]
        elif hasattr(value, "f_locals"):
            children = [value.f_locals, value.f_back]
        else:
            return None
        for child in children:
            found = nonce_in(child, depth + 1, seen)
            if found:
                return found
        return None

    def _filled(cell):
        try:
            cell.cell_contents
            return True
        except ValueError:
            return False

    def forge(nonce, count=2):
        lines = "".join(f'\n@@assay:{nonce} {{"t": "test", "i": {i}, "ok": true, "msg": ""}}\n'
                        for i in range(count))
        data = (lines + f'\n@@assay:{nonce} {{"t": "done", "n": {count}}}\n').encode()
        for fd in range(1, 20):
            try:
                os.write(fd, data)
            except OSError:
                pass
        os._exit(0)

    def read_memory(open_mem, pid="self"):
        """Scan the readable mappings of a process through a file object of its memory."""
        try:
            maps = open(f"/proc/{pid}/maps").read().splitlines()
            mem = open_mem()
        except OSError:
            return None
        with mem:
            for line in maps:
                fields = line.split()
                start, end = (int(x, 16) for x in fields[0].split("-"))
                if "r" not in fields[1] or end - start > 1 << 28 or line.endswith(("[vvar]", "[vsyscall]")):
                    continue
                try:
                    mem.seek(start)
                    found = nonce_in_bytes(mem.read(end - start))
                except (OSError, OverflowError, ValueError):
                    continue
                if found:
                    return found
        return None

    def other_pids():
        return [p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]
''')

WRONG = "\ndef add(a, b):\n    return 0\n"

MEMORY_SPELLINGS = {
    "relative path after chdir": dedent("""
        def through_chdir(pid):
            os.chdir(f"/proc/{pid}")
            try:
                return open("mem", "rb")
            finally:
                os.chdir("/work")
        for pid in ["self", *other_pids()]:
            found = read_memory(lambda: through_chdir(pid), pid)
            if found:
                forge(found)
    """),
    "doubled slash": dedent("""
        for pid in ["self", *other_pids()]:
            found = read_memory(lambda: open(f"//proc//{pid}//mem", "rb"), pid)
            if found:
                forge(found)
    """),
    "symlink to /proc/self/mem": dedent("""
        for n, pid in enumerate(["self", *other_pids()]):
            link = f"/tmp/m{n}"
            os.symlink(f"/proc/{pid}/mem", link)
            found = read_memory(lambda: open(link, "rb"), pid)
            if found:
                forge(found)
    """),
    "the judge's descriptors and memory by pid": dedent("""
        for pid in other_pids():
            for path in (f"/proc/{pid}/fd/0", f"/proc/{pid}/environ", f"/proc/{pid}/cmdline"):
                try:
                    found = nonce_in_bytes(open(path, "rb").read())
                except OSError:
                    continue
                if found:
                    forge(found)
            for fd in ("1", "3"):  # write a fake result onto the judge's record channel
                try:
                    with open(f"/proc/{pid}/fd/{fd}", "wb") as channel:
                        channel.write(b'@@assay:0 {"t": "done", "n": 2}\\n')
                except OSError:
                    pass
    """),
}

HOOKS = {
    "frames handed to a signal handler": dedent("""
        import signal, time
        def handler(signum, frame):
            found = nonce_in(frame)
            if found:
                forge(found)
        signal.signal(signal.SIGALRM, handler)
        signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)  # also fires during the tests' calls
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
            pass
    """),
    "trace and profile hooks": dedent("""
        import threading
        def hook(frame, event, arg):
            found = nonce_in(frame)
            if found:
                forge(found)
            return hook
        for install in (sys.settrace, sys.setprofile, threading.settrace, threading.setprofile):
            try:
                install(hook)
            except Exception:
                pass
    """),
    "faulthandler": dedent("""
        import faulthandler, tempfile
        with tempfile.TemporaryFile() as dump:
            faulthandler.dump_traceback(file=dump, all_threads=True)
            dump.seek(0)
            found = nonce_in_bytes(dump.read())
            if found:
                forge(found)
        for fd in range(1, 10):  # tracebacks onto the record channel, then a crash
            try:
                faulthandler.enable(file=fd, all_threads=True)
            except (OSError, ValueError, RuntimeError):
                pass
        def add(a, b):
            faulthandler._sigsegv()
    """),
    "threads": dedent("""
        import gc, threading, time
        def spy():
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    for frame in sys._current_frames().values():
                        found = nonce_in(frame)
                        if found:
                            forge(found)
                    for value in gc.get_objects():
                        if isinstance(value, (bytes, str, dict)):
                            found = nonce_in(value)
                            if found:
                                forge(found)
                except Exception:
                    pass
                time.sleep(0.01)
        threading.Thread(target=spy, daemon=True).start()
    """),
    "finalizers": dedent("""
        import atexit, gc, weakref
        class Spy:
            def __init__(self):
                self.cycle = self  # cyclic garbage: collected at some later point, in any code
            def __del__(self):
                Spy()  # always one more pending, for the next collection
                try:
                    found = nonce_in(sys._getframe(1))
                    for value in gc.get_objects():
                        found = found or (nonce_in(value) if isinstance(value, (bytes, dict)) else None)
                except Exception:
                    found = None
                if found:
                    forge(found)
        Spy()
        weakref.finalize(Spy, lambda: forge("0" * 32))
        atexit.register(lambda: forge("0" * 32))
    """),
    "patching the standard library at import": dedent("""
        import json
        real_dumps, real_write = json.dumps, os.write
        def dumps(value, *args, **kwargs):
            if isinstance(value, dict) and value.get("t") == "test":
                value = dict(value, ok=True, msg="")
            return real_dumps(value, *args, **kwargs)
        def write(fd, data):
            data = bytes(data).replace(b'"ok": false', b'"ok": true')
            return real_write(fd, data)
        json.dumps, os.write = dumps, write
    """),
}

RAW_CHANNEL = dedent("""
    import json
    def frame(message):
        body = json.dumps(message).encode()
        return len(body).to_bytes(4, "big") + body
    def read(n):
        data = b""
        while len(data) < n:
            chunk = os.read(3, n - len(data))
            if not chunk:
                os._exit(0)
            data += chunk
        return data
    os.write(3, frame({"loaded": True, "shadows": ["print", "eval"]}))  # before the real reply
    while True:  # from now on, answer every request of the judge ourselves
        request = json.loads(read(int.from_bytes(read(4), "big")))
        answer = GLOBAL if request.get("op") == "global" else {"value": {"H": [1, "Yes", []]}}
        os.write(3, frame(answer))
""")
# What the program claims the tests' `add` is, when it answers the judge itself: a handle
# without comparison methods (judged by identity), the judge's own print, os._exit and os module,
# a handle of the judge's that it was never handed, an always-raising answer.
CHANNEL = {
    "a handle of its own": {"value": {"H": [1, "Yes", []]}},
    "the judge's print": {"value": {"P": ["builtins", "print"]}},
    "the judge's os._exit": {"value": {"P": ["os", "_exit"]}},
    "the judge's os module": {"value": {"U": "os"}},
    "a judge handle never handed": {"value": {"J": 1}},
    "an exception of the judge's choosing": {"error": ["SystemExit", None, "SystemExit: 0", [0]]},
    "garbage": {"value": {"D": [[[1], 2]]}},
}

HOSTILE = {
    **{f"memory: {name}": STEAL + code + WRONG for name, code in MEMORY_SPELLINGS.items()},
    **{name: STEAL + code + WRONG if "def add" not in code else STEAL + code for name, code in HOOKS.items()},
    **{f"channel: {name}": f"{STEAL}GLOBAL = {reply!r}\n{RAW_CHANNEL}" for name, reply in CHANNEL.items()},
}


@pytest.mark.parametrize("attack", sorted(HOSTILE))
def test_a_program_cannot_forge_its_verdict(docker_sandbox, host_health, attack: str) -> None:
    verdict = verify(docker_sandbox, "python", HOSTILE[attack], TESTS, extract=False)
    assert verdict.status in ("failed", "runtime_error"), verdict
    assert (verdict.passed, verdict.total) == (0, 2), verdict
    assert verdict.trust == "isolated"
    honest = verify(docker_sandbox, "python", HONEST, TESTS, extract=False)
    assert (honest.status, honest.passed, honest.total) == ("passed", 2, 2), honest


CALLBACK_TESTS = "assert apply(lambda v: v + 1, 2) == 6\nassert apply(abs, -3) == 9\n"
CALLBACK_HONEST = "def apply(fn, x):\n    return fn(x) * abs(x)\n"
CALLBACK_HOSTILE = {
    # The tests' callable gives the program nothing of theirs: no globals, closures or code.
    "the globals and closures of the tests' callable": STEAL
    + dedent("""
        def apply(fn, x):
            for name in ("__globals__", "__closure__", "__code__", "__dict__", "__self__"):
                try:
                    found = nonce_in(getattr(fn, name))
                except Exception:
                    continue
                if found:
                    forge(found)
            try:
                fn.__globals__["_assay_assert"] = lambda *a: None
            except Exception:
                pass
            return 0
    """),
    "rebinding the callable's attributes": dedent("""
        def apply(fn, x):
            for name, value in (("__code__", (lambda v: 6).__code__), ("answer", 6), ("__call__", None)):
                try:
                    setattr(fn, name, value)
                except Exception:
                    pass
            return 0
    """),
}


@pytest.mark.parametrize("attack", sorted(CALLBACK_HOSTILE))
def test_callables_handed_to_the_program_reveal_nothing(docker_sandbox, attack: str) -> None:
    verdict = verify(docker_sandbox, "python", CALLBACK_HOSTILE[attack], CALLBACK_TESTS, extract=False)
    assert verdict.status == "failed", verdict
    assert (verdict.passed, verdict.total) == (0, 2), verdict
    honest = verify(docker_sandbox, "python", CALLBACK_HONEST, CALLBACK_TESTS, extract=False)
    assert (honest.status, honest.passed, honest.total) == ("passed", 2, 2), honest


def test_the_judge_runs_as_another_uid_out_of_the_programs_reach(docker_sandbox) -> None:
    probe = dedent("""
        import os, signal
        seen = []
        for pid in [p for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, os.getpid())]:
            status = open(f"/proc/{pid}/status").read()
            uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
            blocked = []
            for path in (f"/proc/{pid}/mem", f"/proc/{pid}/fd/1", f"/proc/{pid}/environ"):
                try:
                    open(path, "rb").read(1)
                except PermissionError:
                    blocked.append(path)
            try:
                os.kill(int(pid), 0)
            except PermissionError:
                blocked.append("signal")
            seen.append((uid, len(blocked)))
        def judge_processes():
            return seen
        def my_uid():
            return os.getuid()
    """)
    tests = "assert len(judge_processes()) == 1\nassert judge_processes()[0] == (my_uid() + 100, 4)\n"
    verdict = verify(docker_sandbox, "python", probe, tests, extract=False)
    assert (verdict.status, verdict.passed) == ("passed", 2), verdict
