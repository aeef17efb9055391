"""The progress display: bars redrawn in a terminal (a pseudo-terminal here), one compact line
every few seconds in a pipe; the same script drives both."""

import os
import pty
import re
import select
import subprocess
import sys
import time

SCRIPT = """
import time
from rich.console import Console
from assay.cli.progress import progress_display

with progress_display(Console(), interval_s=0.3) as progress:
    generate = progress.add_task("generate", total=4)
    verify = progress.add_task("verify", total=4)
    for _ in range(4):
        time.sleep(0.2)
        progress.advance(generate, 1, completions=4, tokens=320)
        progress.advance(verify, 1)
print("finished")
"""
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_in_pty(columns: int = 80) -> str:
    """Run the script with its stdout on a pseudo-terminal; return everything it wrote."""
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": str(columns), "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=slave, stderr=slave, env=env)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    proc.wait(timeout=30)
    os.close(master)
    assert proc.returncode == 0
    return b"".join(chunks).decode(errors="replace")


def test_terminal_gets_bars_with_rates_and_eta() -> None:
    out = run_in_pty()
    assert "\x1b[" in out  # redrawn in place: cursor movement, not a stream of lines
    screen = ANSI.sub("", out)
    assert "generate" in screen and "verify" in screen and "finished" in screen
    assert "4/4" in screen
    assert re.search(r"\d+(\.\d)? compl/s", screen) and re.search(r"\d+(\.\d)? tok/s", screen)
    assert "━" in screen  # the bar itself
    assert "generate 4/4 rows" not in screen  # no periodic lines on a terminal


def test_pipe_gets_one_compact_line_per_interval() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60,
        env={**os.environ, "COLUMNS": "80"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "\x1b[" not in result.stdout  # plain text for a log file
    lines = [line for line in result.stdout.splitlines() if line.startswith("[")]
    assert len(lines) >= 2  # at least one while running (every 0.3 s over 0.8 s) and the last
    last = lines[-1]
    assert re.fullmatch(
        r"\[0:00:0\d\] generate 4/4 rows, [\d.]+ compl/s, [\d.]+ tok/s, done in 0:00:0\d; "
        r"verify 4/4 rows, done in 0:00:0\d",
        last,
    ), last
    assert any("ETA" in line for line in lines[:-1])
    assert result.stdout.rstrip().endswith("finished")
