"""The jobs page's data, read from the job store (`datagen.jobs.store`) when there is one.

The viewer never creates a job store: without its file there is no jobs page.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict
from pathlib import Path
from typing import Any


def jobs_path(registry_root: str) -> Path | None:
    """The job store file of `registry_root`, or None when there is none (or no job system)."""
    if importlib.util.find_spec("datagen.jobs.store") is None:
        return None
    from datagen.jobs.store import store_path

    path = store_path(registry_root)
    return path if path.is_file() else None


def read_jobs(path: Path, limit: int = 500) -> dict[str, Any]:
    """The newest `limit` jobs and the count of jobs per state."""
    from datagen.jobs.store import JobStore

    store = JobStore(path)
    jobs = [asdict(job) for job in store.list(limit=limit)]
    return {"jobs": jobs, "counts": store.counts()}


LOG_LINES = 400


def read_log(path: Path, job_id: str) -> dict[str, Any]:
    """The last `LOG_LINES` lines of a job's log, read from its end (a log may be large)."""
    from datagen.jobs.store import JobStore

    log = JobStore(path).get(job_id).log_path
    if not log or not Path(log).is_file():
        return {"path": log or "", "text": None, "cut": False, "shown": 0}
    with open(log, "rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(0, size - 256 * 1024))
        lines = handle.read().decode("utf-8", errors="replace").splitlines()
    shown = lines[-LOG_LINES:]
    return {
        "path": log,
        "text": "\n".join(shown),
        "cut": len(lines) > LOG_LINES or size > 256 * 1024,
        "shown": len(shown),
    }
