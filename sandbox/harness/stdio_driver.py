"""assay's stdio driver. Runs inside the sandbox as `python3 -I -B stdio_driver.py`.

stdin: one JSON object {"nonce", "argv", "stdins", "timeout_s", "output_bytes"}. The driver runs
`argv` once per input, in its own process group, kills it when `timeout_s` passes, and writes
one record per run on stdout: `@@assay:<nonce> {"t": "out", "i", "stdout", "stderr", "exit",
"signal", "timeout"}`, then a done record. The expected outputs never enter the sandbox: the
host compares them, so a program cannot print its way to a pass.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys


def _read_stdin() -> bytes:
    chunks = []
    while chunk := os.read(0, 1 << 20):
        chunks.append(chunk)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    return b"".join(chunks)


def main() -> None:
    """Run every case and report its output."""
    request = json.loads(_read_stdin())
    prefix = f"\n@@assay:{request['nonce']} ".encode()
    out = os.dup(1)
    os.dup2(2, 1)
    cap = int(request["output_bytes"])

    def emit(record: dict) -> None:
        data = prefix + json.dumps(record).encode() + b"\n"
        while data:
            data = data[os.write(out, data) :]

    for index, stdin in enumerate(request["stdins"]):
        process = subprocess.Popen(
            request["argv"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
            pass_fds=(),
        )
        timed_out = False
        try:
            stdout, stderr = process.communicate(stdin.encode(), timeout=float(request["timeout_s"]))
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
        code = process.returncode
        emit(
            {
                "t": "out",
                "i": index,
                "stdout": stdout[:cap].decode("utf-8", errors="replace"),
                "stderr": stderr[-2000:].decode("utf-8", errors="replace"),
                "exit": code if code is not None and code >= 0 else None,
                "signal": -code if code is not None and code < 0 else None,
                "timeout": timed_out,
            }
        )
        try:
            os.killpg(process.pid, signal.SIGKILL)  # anything the run left behind
        except ProcessLookupError:
            pass
    emit({"t": "done", "n": len(request["stdins"])})
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
