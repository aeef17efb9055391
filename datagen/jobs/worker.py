"""The worker: runs queued jobs, highest priority first, FIFO within a priority, as many at
once as its resources allow, each in a process of its own (or one at a time in this process).

A job that exits without recording its end (killed, out of memory) is marked failed with how
it died; `assay jobs resume` runs it again under the same id and the LLM-call cache gives back
every completion it had finished. A job being cancelled has its process tree killed.
"""

from __future__ import annotations

import importlib
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from assay.errors import AssayError
from datagen.jobs.store import FINAL_STATES, JobRecord, JobState, JobStore, Resources

KILL_GRACE_S = 5.0
# The module each kind of job runs in (`python -m MODULE JOB --store DB --registry ROOT`); each
# has `run_stored_job(store, job_id, registry_root)`. Packages above this one add their kinds
# when they start a worker (`assay jobs worker` adds the loop's steps).
PIPELINE_RUNNERS: dict[str, str] = {"pipeline": "datagen.jobs.runner", "retry": "datagen.jobs.runner"}


def machine_resources() -> Resources:
    """This machine's CPUs, GPUs (`nvidia-smi -L`) and memory."""
    import psutil

    gpus = 0
    if shutil.which("nvidia-smi"):
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
        gpus = sum(1 for line in listing.stdout.splitlines() if line.startswith("GPU "))
    return Resources(
        cpus=float(os.cpu_count() or 1),
        gpus=float(gpus),
        memory_gb=round(psutil.virtual_memory().total / 2**30, 1),
    )


def check_fits(request: Resources, capacity: Resources, where: str = "this machine") -> None:
    """Refuse a request no worker could ever run, with the numbers.

    Raises:
        AssayError: one resource asked for exceeds what `where` has.
    """
    over = [
        f"{what} {asked:g} > {has:g}"
        for what, asked, has in (
            ("CPUs", request.cpus, capacity.cpus),
            ("GPUs", request.gpus, capacity.gpus),
            ("memory GiB", request.memory_gb, capacity.memory_gb),
        )
        if asked > has
    ]
    if over:
        raise AssayError(f"the job asks for more than {where} has ({capacity.describe()}): {', '.join(over)}")


@dataclass
class _Running:
    job: JobRecord
    process: subprocess.Popen[bytes]


class Worker:
    """Runs the store's queued jobs.

    Args:
        store: The job store.
        registry_root: The registry the jobs write to.
        capacity: What the worker may hand out to running jobs.
        in_process: Run jobs one at a time in this process, sharing one Ray (fast for many
            small jobs; a job that crashes takes the worker with it).
        poll_s: Seconds between looks at the queue.
    """

    def __init__(
        self,
        store: JobStore,
        registry_root: str,
        capacity: Resources,
        *,
        in_process: bool = False,
        poll_s: float = 0.5,
        log: object = print,
        runners: Mapping[str, str] = PIPELINE_RUNNERS,
    ) -> None:
        self.store, self.registry_root, self.capacity = store, registry_root, capacity
        self.in_process, self.poll_s, self.log = in_process, poll_s, log
        self.runners = dict(runners)  # job kind -> the module that runs it
        self.running: dict[str, _Running] = {}

    def run(self, *, until_idle: bool = False, max_jobs: int | None = None) -> int:
        """Run jobs until stopped (or, with `until_idle`, until nothing is left to start).

        Returns:
            How many jobs this worker started.
        """
        started = 0
        self.recover_lost()
        if self.in_process:
            import logging

            import ray.data

            from datagen.job import start_ray

            start_ray(None, max(1, math.floor(self.capacity.cpus)))
            # One log line per job, not Ray Data's progress for each of its datasets.
            ray.data.DataContext.get_current().enable_progress_bars = False
            logging.getLogger("ray.data").setLevel(logging.WARNING)
        try:
            while max_jobs is None or started < max_jobs or self.running:
                self._reap()
                self._cancel_requested()
                job = None
                if max_jobs is None or started < max_jobs:
                    job = self.store.claim_next(self._free())
                if job is not None:
                    started += 1
                    self._start(job)
                    self._schedule_next(job)
                    continue
                if until_idle and not self.running:
                    break
                time.sleep(self.poll_s)
        finally:
            for entry in list(self.running.values()):  # a stopped worker leaves no orphan jobs
                _kill_tree(entry.process.pid)
                entry.process.wait()
                self.store.finish(entry.job.id, JobState.FAILED, "the worker stopped; resume it")
        return started

    def recover_lost(self) -> list[str]:
        """Mark failed the jobs this host shows running whose process is gone; see `recover_lost`."""
        return recover_lost(self.store, skip=set(self.running))

    def _free(self) -> Resources:
        free = self.capacity
        for entry in self.running.values():
            free = free.minus(entry.job.resources)
        return free

    def _start(self, job: JobRecord) -> None:
        self.log(f"starting {job.id} (priority {job.priority}, attempt {job.attempts})")
        module = self.runners.get(job.kind)
        if module is None:
            record = self.store.finish(job.id, JobState.FAILED, f"this worker runs no {job.kind} jobs")
            self.log(f"{job.id}: {record.state} ({record.error})")
            return
        if self.in_process:
            state = importlib.import_module(module).run_stored_job(self.store, job.id, self.registry_root)
            self.log(f"{job.id}: {state}")
            return
        assert job.log_path is not None
        Path(job.log_path).parent.mkdir(parents=True, exist_ok=True)
        with open(job.log_path, "ab") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", module, job.id, "--store", str(self.store.path),
                 "--registry", self.registry_root],
                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.store.update(job.id, pid=process.pid)
        self.running[job.id] = _Running(job, process)

    def _reap(self) -> None:
        for job_id, entry in list(self.running.items()):
            code = entry.process.poll()
            if code is None:
                continue
            del self.running[job_id]
            _kill_tree(entry.process.pid)  # Ray processes the job started and left behind
            record = self.store.get(job_id)
            if record.state not in FINAL_STATES:
                how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
                record = self.store.finish(job_id, JobState.FAILED, f"the job's process {how}; resume it")
            self.log(f"{job_id}: {record.state}" + (f" ({record.error})" if record.error else ""))

    def _cancel_requested(self) -> None:
        for job_id, entry in list(self.running.items()):
            if self.store.get(job_id).state == JobState.CANCELLING:
                _kill_tree(entry.process.pid)
                entry.process.wait()
                del self.running[job_id]
                self.store.finish(job_id, JobState.CANCELLED, "cancelled")
                self.log(f"{job_id}: cancelled")

    def _schedule_next(self, job: JobRecord) -> None:
        """A recurring job queues its next occurrence when it starts (`not_before` = now + every)."""
        if job.every_s:
            self.store.submit_next(job)


def recover_lost(store: JobStore, *, skip: set[str] | None = None, only: str | None = None) -> list[str]:
    """Mark failed the jobs this host shows running whose process is gone (their worker was
    killed with them, an `--in-process` worker was killed, the machine restarted), so they can
    be resumed; returns their ids.

    Args:
        store: The job store.
        skip: Ids of jobs the caller runs itself (alive by definition).
        only: Look at this job alone (`assay jobs resume JOB`).
    """
    import psutil

    host = socket.gethostname()
    lost = []
    for job in store.list([JobState.RUNNING, JobState.CANCELLING]):
        if job.host != host or job.id in (skip or set()) or job.ray_submission_id:
            continue
        if only is not None and job.id != only:
            continue
        if job.pid is not None and psutil.pid_exists(job.pid):
            continue
        if job.pid is None and time.time() - (job.heartbeat_at or 0) < 60:
            continue  # claimed a moment ago, its process not started yet
        store.finish(job.id, JobState.FAILED, f"lost: its process {job.pid} is gone; resume it")
        lost.append(job.id)
    return lost


def _kill_tree(pid: int) -> None:
    """Kill a process, everything it started (Ray's raylet and workers too) and its group."""
    import psutil

    try:
        parent = psutil.Process(pid)
        family = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    for process in family:
        try:
            process.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(family, timeout=KILL_GRACE_S)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
