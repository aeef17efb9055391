"""What `assay run` prints for the demo's spec (examples/best_of_n_ifeval.yaml, all 50 prompts, on
the suite's tiny model) when stdout is a pipe at 80 columns: the job's own lines, progress lines
per stage and readable tables; nothing at WARNING or above from Ray, Lance or the libraries."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ASSAY = Path(sys.executable).parent / "assay"
# A log line at WARNING or above, in the formats of Python's logging, Ray's C++ core (glog:
# "[date time W pid tid] file:line"), Python's warnings module, and Ray's own logger.
LOUD = re.compile(
    r"\b(WARNING|ERROR|CRITICAL|FATAL)\b|Warning:|\w+Warning\b|^\[\d{4}-\d\d-\d\d [\d:,]+ [WEF] \d+"
)


def test_demo_sized_run_prints_progress_and_no_warnings(tmp_path: Path, tiny_model: Path) -> None:
    env = {**os.environ, "ASSAY_REGISTRY": str(tmp_path / "registry"), "COLUMNS": "80"}
    result = subprocess.run(
        [str(ASSAY), "run", str(ROOT / "examples" / "best_of_n_ifeval.yaml"), "--no-cache",
         "--set", f"stages.1.engine.model={tiny_model}", "--set", "stages.1.sampling.max_tokens=8"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    loud = [line for line in out.splitlines() if LOUD.search(line)]
    assert loud == [], "\n".join(loud)

    # Progress: plain lines (no redrawn bars in a pipe); the last one has every stage done.
    assert "\x1b[" not in result.stdout
    progress = [line for line in result.stdout.splitlines() if re.match(r"\[\d+:\d\d:\d\d\] ", line)]
    assert progress, result.stdout
    last = progress[-1]
    for stage in ("render", "generate", "verify", "select"):
        assert f"{stage} 50/50 rows" in last, last
    assert re.search(r"generate 50/50 rows, [\d.]+ compl/s, [\d.]+ tok/s, done in", last), last
    assert "Total Progress" not in out and "Running Dataset" not in out  # Ray Data's own lines

    # Tables fit in 80 columns with every header whole.
    assert "…" not in result.stdout
    tables = [line for line in result.stdout.splitlines() if line[:1] in "┏┃┡│└"]
    assert tables and all(len(line) <= 80 for line in tables)
    assert "completions generated" in result.stdout and "completion tokens/s" in result.stdout

    # Ray's full logs are kept with the job.
    (logs,) = re.findall(r"Ray's logs: (\S+)", result.stdout)
    assert Path(logs).is_dir() and any(path.is_file() for path in Path(logs).rglob("*"))


def test_ray_data_false_alarms_are_dropped_and_real_warnings_kept() -> None:
    import logging

    import ray.data  # noqa: F401 - the handlers quiet_ray_console configures

    from datagen.job_console import quiet_ray_console

    quiet_ray_console()
    handlers = [h for h in logging.getLogger("ray.data").handlers if not isinstance(h, logging.FileHandler)]
    assert handlers, "Ray Data has a console handler to filter"

    def shown(message: str) -> bool:
        record = logging.LogRecord("ray.data._internal.issue_detection", logging.WARNING, "x.py", 1,
                                   message, None, None)  # fmt: skip
        return all(f.filter(record) for h in handlers for f in h.filters)

    # As Ray Data logs it: wrapped over lines.
    assert not shown("\n\nOperator 'MapBatches(run)' uses 467.5MiB of memory per\nworker on average (up to")
    assert not shown("Found 1 issues. To disable issue detection, run DataContext...")
    assert shown("Operator 'MapBatches(run)' has been running for 600s: it may be hanging")
