"""The job store: one SQLite file (WAL) with a row per job, safe for concurrent clients.

Why SQLite and not a Lance table: a job changes state many times (claimed, heartbeats,
progress, finished), and a worker must claim a queued job so that no other worker claims it
too. SQLite gives that as one transaction (`BEGIN IMMEDIATE` takes the write lock, the claim
is an UPDATE ... WHERE state = 'queued'), its WAL journal keeps readers going while a writer
writes and survives a killed process (an interrupted transaction is rolled back on the next
open), and `jobs list` over 10,000 rows is one indexed query. Lance is append-and-commit:
every state change would be a new version and a claim a commit race.

Where it lives: `ROOT/_jobs/jobs.sqlite` for a registry on a local (or shared, POSIX-locking)
disk. SQLite cannot live on an object store, so for an `s3://...` root the store is a local
file under `$ASSAY_HOME/jobs/` keyed by the root: the scheduler (the machine that runs
`assay jobs worker`, or a cluster's head, where Ray Jobs runs entrypoints) owns the queue and
the job logs (beside the store), and only the datasets and the LLM-call cache need storage
every node sees.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from assay.errors import AssayError


class JobState(StrEnum):
    """Where a job is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"


FINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
DEFAULT_MAX_ATTEMPTS = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'pipeline',
    spec_path TEXT NOT NULL,
    spec_text TEXT NOT NULL,
    spec_hash TEXT NOT NULL,
    overrides TEXT NOT NULL DEFAULT '[]',
    priority INTEGER NOT NULL DEFAULT 0,
    cpus REAL NOT NULL DEFAULT 1,
    gpus REAL NOT NULL DEFAULT 0,
    memory_gb REAL NOT NULL DEFAULT 0,
    after TEXT,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 3,
    submitted_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    heartbeat_at REAL,
    host TEXT,
    pid INTEGER,
    progress TEXT NOT NULL DEFAULT '{}',
    accounting TEXT NOT NULL DEFAULT '{}',
    outputs TEXT NOT NULL DEFAULT '[]',
    error TEXT,
    log_path TEXT,
    address TEXT,
    ray_submission_id TEXT,
    every_s REAL,
    not_before REAL,
    parent TEXT
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (state, priority DESC, seq);
"""

_JSON_FIELDS = ("overrides", "progress", "accounting", "outputs")


@dataclass
class Resources:
    """CPUs, GPUs and memory (GiB) a job asks for or a machine has."""

    cpus: float = 1.0
    gpus: float = 0.0
    memory_gb: float = 0.0

    def fits_in(self, other: Resources) -> bool:
        """Whether this request fits in `other`."""
        return self.cpus <= other.cpus and self.gpus <= other.gpus and self.memory_gb <= other.memory_gb

    def minus(self, other: Resources) -> Resources:
        return Resources(self.cpus - other.cpus, self.gpus - other.gpus, self.memory_gb - other.memory_gb)

    def describe(self) -> str:
        return f"{self.cpus:g} CPUs, {self.gpus:g} GPUs, {self.memory_gb:g} GiB"


@dataclass
class JobRecord:
    """One job as the store holds it."""

    seq: int
    id: str
    name: str
    kind: str
    spec_path: str
    spec_text: str
    spec_hash: str
    overrides: list[str]
    priority: int
    cpus: float
    gpus: float
    memory_gb: float
    after: str | None
    state: JobState
    attempts: int
    max_attempts: int
    submitted_at: float
    started_at: float | None
    finished_at: float | None
    heartbeat_at: float | None
    host: str | None
    pid: int | None
    progress: dict[str, Any] = field(default_factory=dict)
    accounting: dict[str, Any] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    error: str | None = None
    log_path: str | None = None
    address: str | None = None
    ray_submission_id: str | None = None
    every_s: float | None = None
    not_before: float | None = None
    parent: str | None = None  # the job whose dead letters a `retry` job re-runs

    @property
    def resources(self) -> Resources:
        return Resources(self.cpus, self.gpus, self.memory_gb)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> JobRecord:
        values = dict(row)
        for name in _JSON_FIELDS:
            values[name] = json.loads(values[name])
        values["state"] = JobState(values["state"])
        return cls(**values)


def store_path(registry_root: str) -> Path:
    """Where the job store of a registry root lives (see the module docstring)."""
    if "://" not in registry_root:
        return Path(registry_root) / "_jobs" / "jobs.sqlite"
    from assay.settings import assay_home

    digest = hashlib.sha256(registry_root.encode()).hexdigest()[:12]
    return assay_home() / "jobs" / digest / "jobs.sqlite"


class JobStore:
    """Jobs in one SQLite file; every method is one transaction, safe across processes.

    Args:
        path: The SQLite file (created with its folder on first use).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.logs_dir = self.path.parent / "logs"
        with self._connect() as db:
            db.executescript(_SCHEMA)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE), so a read never
        # holds a lock and a writer waits for the lock instead of failing at commit.
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # a committed transaction survives a crash
            yield db
        finally:
            db.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def submit(
        self,
        *,
        name: str,
        spec_path: str,
        spec_text: str,
        overrides: list[str],
        priority: int = 0,
        resources: Resources | None = None,
        after: str | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        address: str | None = None,
        every_s: float | None = None,
        not_before: float | None = None,
        kind: str = "pipeline",
        parent: str | None = None,
        state: JobState = JobState.QUEUED,
    ) -> JobRecord:
        """Queue a job; its id is stable for its whole life, retries included.

        A job submitted to a Ray cluster is stored `running` at once (`state`), so that no local
        worker claims it; `start_on_cluster` then records its Ray submission.
        """
        resources = resources or Resources()
        job_id = f"{name}-{uuid.uuid4().hex[:8]}"
        spec_hash = hashlib.sha256(spec_text.encode()).hexdigest()
        with self._write() as db:
            if (
                after is not None
                and db.execute("SELECT 1 FROM jobs WHERE id = ?", (after,)).fetchone() is None
            ):
                raise AssayError(f"--after {after}: no such job")
            db.execute(
                "INSERT INTO jobs (id, name, kind, spec_path, spec_text, spec_hash, overrides, priority,"
                " cpus, gpus, memory_gb, after, state, max_attempts, submitted_at, log_path, address,"
                " every_s, not_before, parent) VALUES (" + ", ".join("?" * 20) + ")",
                (
                    job_id, name, kind, spec_path, spec_text, spec_hash, json.dumps(overrides), priority,
                    resources.cpus, resources.gpus, resources.memory_gb, after, str(state),
                    max_attempts, time.time(), str(self.logs_dir / f"{job_id}.log"), address, every_s,
                    not_before, parent,
                ),
            )  # fmt: skip
        return self.get(job_id)

    def submit_next(self, job: JobRecord) -> JobRecord:
        """Queue the next occurrence of a recurring job, `every_s` after now."""
        assert job.every_s is not None
        return self.submit(
            name=job.name, spec_path=job.spec_path, spec_text=job.spec_text, overrides=job.overrides,
            priority=job.priority, resources=job.resources, max_attempts=job.max_attempts,
            address=job.address, every_s=job.every_s, not_before=time.time() + job.every_s, kind=job.kind,
        )  # fmt: skip

    def get(self, job_id: str) -> JobRecord:
        """One job by id.

        Raises:
            AssayError: no job has that id.
        """
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise AssayError(f"no job {job_id!r} in {self.path} (assay jobs list shows them)")
        return JobRecord.from_row(row)

    def list(self, states: list[JobState] | None = None, limit: int | None = None) -> list[JobRecord]:
        """Jobs, newest first, optionally only in `states`."""
        query, args = "SELECT * FROM jobs", []
        if states:
            query += f" WHERE state IN ({', '.join('?' * len(states))})"
            args += [str(s) for s in states]
        query += " ORDER BY seq DESC"
        if limit is not None:
            query += " LIMIT ?"
            args.append(limit)
        with self._connect() as db:
            return [JobRecord.from_row(row) for row in db.execute(query, args)]

    def counts(self) -> dict[str, int]:
        """How many jobs are in each state."""
        with self._connect() as db:
            return dict(db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())

    def claim_next(self, free: Resources, *, host: str | None = None) -> JobRecord | None:
        """Mark the next runnable queued job running and return it, or None.

        Order: highest priority first, FIFO (submission order) within a priority. A job whose
        `after` job has not succeeded waits (and fails if that job failed or was cancelled).
        The first runnable job that does not fit in `free` blocks the queue: a big job is not
        starved by small ones behind it.
        """
        with self._write() as db:
            rows = db.execute(
                "SELECT j.*, a.state AS after_state FROM jobs j LEFT JOIN jobs a ON a.id = j.after"
                " WHERE j.state = 'queued' AND (j.not_before IS NULL OR j.not_before <= ?)"
                " ORDER BY j.priority DESC, j.seq",
                (time.time(),),
            ).fetchall()
            for row in rows:
                after_state = row["after_state"]
                if row["after"] is not None and after_state != JobState.SUCCEEDED:
                    if after_state in (JobState.FAILED, JobState.CANCELLED):
                        db.execute(
                            "UPDATE jobs SET state = 'failed', finished_at = ?, error = ? WHERE seq = ?",
                            (time.time(), f"job {row['after']} it waited for is {after_state}", row["seq"]),
                        )
                    continue
                values = {k: row[k] for k in row.keys() if k != "after_state"}
                request = Resources(values["cpus"], values["gpus"], values["memory_gb"])
                if not request.fits_in(free):
                    return None
                db.execute(
                    "UPDATE jobs SET state = 'running', attempts = attempts + 1, started_at = ?,"
                    " heartbeat_at = ?, finished_at = NULL, error = NULL, host = ?, pid = NULL"
                    " WHERE seq = ?",
                    (time.time(), time.time(), host or socket.gethostname(), values["seq"]),
                )
                return self._get(db, values["id"])
        return None

    @staticmethod
    def _get(db: sqlite3.Connection, job_id: str) -> JobRecord:
        return JobRecord.from_row(db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())

    def update(self, job_id: str, **values: Any) -> None:
        """Set fields of a job (JSON fields take Python values)."""
        for name in _JSON_FIELDS:
            if name in values:
                values[name] = json.dumps(values[name])
        assignments = ", ".join(f"{name} = ?" for name in values)
        with self._write() as db:
            db.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", (*values.values(), job_id))

    def finish(self, job_id: str, state: JobState, error: str | None = None) -> JobRecord:
        """Record a job's end. A job being cancelled ends cancelled, whatever it reports."""
        with self._write() as db:
            current = self._get(db, job_id)
            if current.state in FINAL_STATES:
                return current
            if current.state == JobState.CANCELLING:
                state = JobState.CANCELLED
            db.execute(
                "UPDATE jobs SET state = ?, finished_at = ?, error = ? WHERE id = ?",
                (str(state), time.time(), error, job_id),
            )
            return self._get(db, job_id)

    def cancel(self, job_id: str) -> JobRecord:
        """A queued job is cancelled now; a running one becomes `cancelling` until it stops."""
        with self._write() as db:
            job = self._get_checked(db, job_id)
            if job.state == JobState.QUEUED:
                db.execute(
                    "UPDATE jobs SET state = 'cancelled', finished_at = ? WHERE id = ?", (time.time(), job_id)
                )
            elif job.state == JobState.RUNNING:
                db.execute("UPDATE jobs SET state = 'cancelling' WHERE id = ?", (job_id,))
            elif job.state != JobState.CANCELLING:
                raise AssayError(
                    f"job {job_id} is {job.state}; only a queued or running job can be cancelled"
                )
            return self._get(db, job_id)

    def start_on_cluster(self, job_id: str, *, address: str, submission_id: str) -> JobRecord:
        """Record that a Ray cluster runs the job now (one more attempt), under `submission_id`."""
        with self._write() as db:
            db.execute(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, started_at = ?,"
                " heartbeat_at = ?, finished_at = NULL, error = NULL, host = ?, pid = NULL, address = ?,"
                " ray_submission_id = ?, log_path = NULL WHERE id = ?",
                (time.time(), time.time(), f"ray cluster {address}", address, submission_id, job_id),
            )
            return self._get_checked(db, job_id)

    def requeue(self, job_id: str, *, bounded: bool, to_state: JobState = JobState.QUEUED) -> JobRecord:
        """Queue a failed or cancelled job again under the same id.

        Args:
            bounded: Count against `max_attempts` (retry); a resume is not bounded.
            to_state: `running` for a job that goes back to its Ray cluster (no local worker
                may claim it in between).

        Raises:
            AssayError: the job is not failed or cancelled, or (bounded) has used its attempts.
        """
        with self._write() as db:
            job = self._get_checked(db, job_id)
            if job.state not in (JobState.FAILED, JobState.CANCELLED):
                raise AssayError(f"job {job_id} is {job.state}; only a failed or cancelled job can run again")
            if bounded and job.attempts >= job.max_attempts:
                raise AssayError(
                    f"job {job_id} has used {job.attempts} of {job.max_attempts} attempts; "
                    "`assay jobs resume` continues it anyway"
                )
            db.execute(
                "UPDATE jobs SET state = ?, finished_at = NULL, error = NULL, pid = NULL WHERE id = ?",
                (str(to_state), job_id),
            )
            return self._get(db, job_id)

    def _get_checked(self, db: sqlite3.Connection, job_id: str) -> JobRecord:
        row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise AssayError(f"no job {job_id!r} in {self.path} (assay jobs list shows them)")
        return JobRecord.from_row(row)
