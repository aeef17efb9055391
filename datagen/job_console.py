"""What a job shows and keeps besides its datasets: per-stage progress while rows flow, a
console free of Ray's and Lance's false alarms, and Ray's full logs in the job's log folder.

Progress: after each stage the job adds a pass-through map that reports the rows finishing the
stage (after a generate stage also the completions and completion tokens generated) to a small
counter actor; a thread in the driver polls it and advances one display task per stage.
"""

from __future__ import annotations

import logging
import shutil
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from assay.settings import assay_home


class ProgressSink(Protocol):
    """A progress display (assay.cli.progress): one task per stage, advanced as rows finish."""

    def add_task(self, name: str, total: int | None = None, unit: str = "rows") -> int:
        """Start showing a task; returns its id."""

    def advance(self, task: int, n: int = 0, **metrics: float) -> None:
        """Add `n` finished rows and counters (completions, tokens) to a task."""


def source_rows(source: Any) -> int | None:
    """How many rows a job's source (datagen.sources.Source) holds, when known up front."""
    if source.table is not None:
        return source.table.num_rows
    if source.version is not None:
        rows = source.version.num_rows
        return rows if source.limit is None else min(rows, source.limit)
    return None


def job_log_dir(job_id: str) -> Path:
    """Where a job keeps Ray's full logs: `$ASSAY_HOME/logs/JOB_ID`."""
    return assay_home() / "logs" / job_id


# Console messages that are false alarms in a job; each says why. Ray Data's own log file (the
# session's logs/ray-data, copied into the job's log folder) still has them.
FALSE_ALARMS = (
    # Ray Data warns when no CPU is free as a dataset starts; between two materializations the
    # model actors still hold theirs, and the job's own check (check_actor_cpus) already keeps
    # free what the job's reads and light stages need, so nothing hangs.
    "does not have any available CPUs",
    # The job turns Ray Data's progress bars off on purpose: it draws its own, per stage.
    "Progress bars disabled",
    "Progress bars for operators disabled",
    # Ray Data's high-memory detector flags every operator that uses more than the memory it
    # requested, and stages request none: their concurrency is bounded by CPUs (check_actor_cpus),
    # and a stage loading a tokenizer or a model (hundreds of MiB) is expected to.
    "of memory per worker on average",
    # The detector's trailer after any issue; the issue's own line (e.g. a hanging task) remains.
    "To disable issue detection",
)


class _DropFalseAlarms(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = " ".join(record.getMessage().split())  # Ray wraps some messages over lines
        return not any(alarm in message for alarm in FALSE_ALARMS)


def quiet_library_warnings() -> None:
    """Silence library warnings that are false alarms in assay (the reason next to each)."""
    # lance warns at every os.fork() once imported; the forks here (Ray's workers, vLLM's engine)
    # exec a fresh interpreter or never touch the parent's lance datasets.
    warnings.filterwarnings("ignore", message="lance is not fork-safe", category=UserWarning)


class _DropTokenAuthNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Token authentication is enabled for this Ray cluster" not in record.getMessage()


def local_ray_env() -> None:
    """Quiet Ray's start-up in this process; call before `ray.init`."""
    # Ray 2.60 turns token authentication on for a new local cluster and announces that default
    # as a warning. It is the setting we want, so the notice is dropped; Ray must pick the mode
    # itself (setting RAY_AUTH_MODE after ray is imported leaves its C++ side disabled).
    auth = logging.getLogger("ray._private.authentication.authentication_token_setup")
    if not any(isinstance(f, _DropTokenAuthNotice) for f in auth.filters):
        auth.addFilter(_DropTokenAuthNotice())


def quiet_ray_console() -> None:
    """Keep the terminal for the job's display: Ray Data's progress and info lines go only to its
    log file, its false alarms nowhere on the console; real warnings still show."""
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.FileHandler):
            continue
        handler.setLevel(max(handler.level, logging.WARNING))
        if not any(isinstance(f, _DropFalseAlarms) for f in handler.filters):
            handler.addFilter(_DropFalseAlarms())


def keep_ray_logs(job_id: str) -> Path | None:
    """Copy this Ray session's logs (workers, actors, Ray Data) into the job's log folder.

    Returns:
        The folder written, or None when Ray is not running in this process.
    """
    import ray

    node = getattr(ray._private.worker, "_global_node", None)  # None when joined to a cluster
    if node is None:
        return None
    target = job_log_dir(job_id) / "ray"
    try:
        shutil.copytree(node.get_logs_dir_path(), target, dirs_exist_ok=True, ignore_dangling_symlinks=True)
    except (OSError, shutil.Error):  # a file removed or rotated while copying: keep what copied
        pass
    return target


class _RowCounter:
    """A Ray actor adding up, per stage, the rows that finished it and their counters."""

    def __init__(self) -> None:
        self.counts: dict[str, dict[str, float]] = {}

    def add(self, stage: str, counts: dict[str, float]) -> None:
        totals = self.counts.setdefault(stage, {})
        for name, value in counts.items():
            totals[name] = totals.get(name, 0.0) + value

    def snapshot(self) -> dict[str, dict[str, float]]:
        return self.counts


def start_counter() -> Any:
    """Start the counter actor the stages' count maps report to."""
    import ray

    # No CPU reserved: it only adds numbers, and must never wait behind the model actors.
    return ray.remote(num_cpus=0)(_RowCounter).remote()


class CountRows:
    """A pass-through map after a stage: reports its rows (and, after a generate stage, the
    completions and completion tokens this job generated, not cache hits) to the counter."""

    def __init__(self, counter: Any, stage: str, completions: str | None = None) -> None:
        self.counter, self.stage, self.completions = counter, stage, completions

    def __call__(self, table: pa.Table) -> pa.Table:
        counts = {"rows": float(table.num_rows)}
        if self.completions and self.completions in table.column_names:
            flat = pc.list_flatten(table[self.completions])
            if len(flat):
                fresh = pc.invert(pc.fill_null(pc.struct_field(flat, "cached"), False))
                counts["completions"] = float(pc.sum(fresh.cast(pa.int64())).as_py() or 0)
                tokens = pc.if_else(fresh, pc.struct_field(flat, "completion_tokens"), 0)
                counts["tokens"] = float(pc.sum(tokens).as_py() or 0)
        import ray

        # Waited for, so every row is counted by the time the dataset finishes (milliseconds).
        ray.get(self.counter.add.remote(self.stage, counts))
        return table


@contextmanager
def forward_progress(
    counter: Any, progress: ProgressSink, stages: list[str], total: int | None, poll_s: float = 0.5
) -> Iterator[None]:
    """While the block runs, poll the counter and advance one progress task per stage.

    Args:
        counter: The actor from `start_counter`.
        progress: The display.
        stages: Stage names, in order (one task each).
        total: Rows the job reads, if known.
        poll_s: Seconds between two polls.
    """
    import ray

    tasks = {name: progress.add_task(name, total) for name in stages}
    seen: dict[str, dict[str, float]] = {}

    def forward() -> None:
        for stage, counts in ray.get(counter.snapshot.remote()).items():
            before = seen.get(stage, {})
            delta = {name: value - before.get(name, 0.0) for name, value in counts.items()}
            seen[stage] = dict(counts)
            rows = int(delta.pop("rows", 0))
            if stage in tasks and (rows or any(delta.values())):
                progress.advance(tasks[stage], rows, **delta)

    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(poll_s):
            forward()

    thread = threading.Thread(target=poll, name="job-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        forward()  # the last rows, counted after the final poll
