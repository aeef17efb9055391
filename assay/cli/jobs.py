"""`assay jobs`: a persistent queue of pipeline jobs with priorities, resume, retry and a worker."""

from __future__ import annotations

import os
import re
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from assay.cli.common import console
from assay.cli.output import JsonOption, emit_json
from assay.errors import AssayError

if TYPE_CHECKING:
    from datagen.jobs.store import JobRecord, JobStore

app = typer.Typer(help="Generation jobs: a queue with priorities, resume and retry.", no_args_is_help=True)

JobId = Annotated[str, typer.Argument(help="Job id (assay jobs list shows them).")]
STATE_STYLE = {"queued": "cyan", "running": "yellow", "succeeded": "green", "failed": "red",
               "cancelling": "magenta", "cancelled": "dim"}  # fmt: skip
DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _registry_root() -> str:
    """The registry root as `Registry` spells it, without importing Lance (keeps `list` fast)."""
    from assay.cli.common import CliState
    from assay.settings import default_registry_root

    root = CliState.registry_root or default_registry_root()
    return root if "://" in root else os.path.abspath(root)


def open_job_store() -> JobStore:
    from datagen.jobs.store import JobStore, store_path

    return JobStore(store_path(_registry_root()))


def _when(stamp: float | None) -> str:
    return "" if stamp is None else f"{datetime.fromtimestamp(stamp):%Y-%m-%d %H:%M:%S}"


def _bar(job: JobRecord, width: int = 12) -> str:
    """A text progress bar: rows done of the source's rows, or the job's phase."""
    done, total = job.progress.get("rows_done"), job.progress.get("rows_total")
    phase = job.progress.get("phase", "")
    if done is None or not total:
        return phase
    filled = round(width * min(done / total, 1.0))
    return f"{'█' * filled}{'░' * (width - filled)} {done}/{total}"


def _parse_every(text: str) -> float:
    match = DURATION.match(text.strip())
    if not match:
        raise AssayError(f"--every {text!r}: give a number and a unit, e.g. 90s, 30m, 6h, 1d")
    return float(match.group(1)) * UNIT_S[match.group(2)]


def _submit(
    spec: Path, set_: list[str] | None, priority: int, name: str | None, cpus: float | None, gpus: float,
    memory_gb: float, after: str | None, max_attempts: int, every_s: float | None = None,
    address: str | None = None,
) -> JobRecord:  # fmt: skip
    """Validate the spec now (one line and exit 2 when it is bad) and queue it, frozen; with
    `address`, submit it to that Ray cluster through the Ray Jobs API instead."""
    from datagen.jobs.store import JobState, Resources
    from datagen.jobs.worker import check_fits, machine_resources
    from datagen.spec import load_spec

    try:
        text = spec.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise AssayError(f"cannot read pipeline spec {spec}: {err}") from err
    try:
        loaded = load_spec(spec, set_ or [])
    except AssayError as err:  # refused in one line, however many the parser's message has
        raise AssayError("; ".join(line.strip() for line in str(err).splitlines() if line.strip())) from err
    machine = machine_resources()
    request = Resources(
        cpus=cpus if cpus is not None else float(loaded.spec.ray.num_cpus or min(2.0, machine.cpus)),
        gpus=gpus,
        memory_gb=memory_gb,
    )
    if address is None:  # a cluster's resources are the cluster's business (Ray queues the tasks)
        check_fits(request, machine)
    elif after is not None or every_s is not None:
        raise AssayError("--after and schedule run through `assay jobs worker`; not with --address")
    store = open_job_store()
    job = store.submit(
        name=name or loaded.spec.name, spec_path=str(spec.resolve()), spec_text=text, overrides=set_ or [],
        priority=priority, resources=request, after=after, max_attempts=max_attempts, every_s=every_s,
        address=address, state=JobState.QUEUED if address is None else JobState.RUNNING,
    )  # fmt: skip
    if address is None:
        return job
    from datagen.jobs.ray_submit import submit_to_cluster

    return submit_to_cluster(store, job, address, _registry_root())


SpecArg = Annotated[Path, typer.Argument(help="Pipeline spec (YAML); a frozen copy is queued.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a spec field: KEY=VALUE.")]
PriorityOpt = Annotated[int, typer.Option(help="Higher runs first; FIFO within a priority.")]
NameOpt = Annotated[str | None, typer.Option(help="Job name (default: the pipeline's name).")]
CpusOpt = Annotated[float | None, typer.Option(help="CPUs (default: the spec's ray.num_cpus, else 2).")]
GpusOpt = Annotated[float, typer.Option(help="GPUs the job needs.")]
MemOpt = Annotated[float, typer.Option("--memory-gb", help="Memory (GiB) the job needs.")]
AttemptsOpt = Annotated[int, typer.Option(help="Runs `assay jobs retry` may start in all.")]


@app.command("submit")
def submit(
    spec: SpecArg, set_: SetOpt = None, priority: PriorityOpt = 0, name: NameOpt = None,
    cpus: CpusOpt = None, gpus: GpusOpt = 0.0, memory_gb: MemOpt = 0.0,
    after: Annotated[str | None, typer.Option(help="Start only once this job has succeeded.")] = None,
    max_attempts: AttemptsOpt = 3,
    address: Annotated[str | None, typer.Option(
        help="Run it on this Ray cluster through the Ray Jobs API: http://HEAD:8265 or ray://HEAD:10001.",
    )] = None,
) -> None:  # fmt: skip
    """Queue a pipeline job; `assay jobs worker` runs it (or a Ray cluster, with --address)."""
    job = _submit(spec, set_, priority, name, cpus, gpus, memory_gb, after, max_attempts, address=address)
    if job.ray_submission_id:
        console.print(f"submitted {job.id} to {job.address} (Ray job {job.ray_submission_id})")
        return
    console.print(f"queued {job.id} (priority {job.priority}, {job.resources.describe()})")


@app.command("schedule")
def schedule(
    spec: SpecArg,
    every: Annotated[str, typer.Option(help="Interval: 90s, 30m, 6h, 1d.")],
    set_: SetOpt = None, priority: PriorityOpt = 0, name: NameOpt = None, cpus: CpusOpt = None,
    gpus: GpusOpt = 0.0, memory_gb: MemOpt = 0.0,
) -> None:  # fmt: skip
    """Run a pipeline now and then every interval (each run queues the next when it starts)."""
    every_s = _parse_every(every)
    job = _submit(spec, set_, priority, name, cpus, gpus, memory_gb, None, 3, every_s)
    console.print(f"queued {job.id}, then every {every} (cancel the queued one to stop)")


@app.command("list")
def list_jobs(
    state: Annotated[list[str] | None, typer.Option(help="Only jobs in this state (repeatable).")] = None,
    limit: Annotated[int, typer.Option(help="Newest N jobs (0: all).")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Jobs, newest first, with their state and progress."""
    from datagen.jobs.store import JobState

    try:
        states = [JobState(s) for s in state or []]
    except ValueError as err:
        raise AssayError(f"--state: {err}; states: {', '.join(s.value for s in JobState)}") from err
    store = open_job_store()
    jobs = _refreshed(store, store.list(states, limit=limit or None))
    counts = store.counts()
    if as_json:
        emit_json({"counts": counts, "jobs": jobs})
        return
    title = "jobs: " + (", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none yet")
    table = Table(title=title, title_justify="left")
    table.add_column("id", no_wrap=True)  # ids are typed back into commands: never cut
    for column in ("state", "prio", "progress", "attempts", "submitted", "outputs"):
        table.add_column(column)
    for job in jobs:
        style = STATE_STYLE.get(job.state, "")
        table.add_row(
            job.id, f"[{style}]{job.state}[/]", str(job.priority), _bar(job),
            f"{job.attempts}/{job.max_attempts}", _when(job.submitted_at), ", ".join(job.outputs),
        )  # fmt: skip
    console.print(table)


def _refreshed(store: JobStore, jobs: list[JobRecord]) -> list[JobRecord]:
    """Running cluster jobs brought up to date with Ray's view (one client per cluster)."""
    live = [j for j in jobs if j.ray_submission_id and j.state in ("running", "cancelling")]
    if not live:
        return jobs
    from datagen.jobs.ray_submit import cluster_client, refresh

    clients: dict[str, object | None] = {}
    fresh: dict[str, JobRecord] = {}
    for job in live:
        assert job.address is not None
        if job.address not in clients:
            try:
                clients[job.address] = cluster_client(job.address)
            except AssayError:
                clients[job.address] = None  # unreachable: the store's view
        if clients[job.address] is not None:
            fresh[job.id] = refresh(store, job, clients[job.address])  # type: ignore[arg-type]
    return [fresh.get(j.id, j) for j in jobs]


def _again_on_cluster(job_id: str, *, bounded: bool) -> bool:
    """Run a cluster job again on its cluster (a new Ray submission, same job id); False for a
    local job."""
    from datagen.jobs.store import JobState

    store = open_job_store()
    job = store.get(job_id)
    if not job.ray_submission_id or job.address is None:
        return False
    from datagen.jobs.ray_submit import submit_to_cluster

    job = store.requeue(job_id, bounded=bounded, to_state=JobState.RUNNING)
    job = submit_to_cluster(store, job, job.address, _registry_root())
    console.print(f"{job.id}: submitted again to {job.address} (Ray job {job.ray_submission_id})")
    return True


def _requeue(job_id: str, *, bounded: bool) -> JobRecord:
    """Queue a local job again; one the store shows running whose process is gone (its
    `--in-process` worker was killed, the machine restarted) is recorded failed first."""
    store = open_job_store()
    if store.get(job_id).state in ("running", "cancelling"):
        from datagen.jobs.worker import recover_lost

        if recover_lost(store, only=job_id):
            console.print(f"{job_id}: its process is gone; recorded failed")
    return store.requeue(job_id, bounded=bounded)


@app.command("show")
def show(job_id: JobId, as_json: JsonOption = False) -> None:
    """Everything the store records about a job."""
    import yaml

    job = open_job_store().get(job_id)
    if as_json:
        emit_json(job)
        return
    fields = {
        "id": job.id, "name": job.name, "state": job.state.value, "priority": job.priority,
        "resources": job.resources.describe(), "after": job.after,
        "attempts": f"{job.attempts}/{job.max_attempts}",
        "spec": job.spec_path, "spec sha256": job.spec_hash, "overrides": job.overrides,
        "submitted": _when(job.submitted_at), "started": _when(job.started_at),
        "finished": _when(job.finished_at), "host": job.host, "pid": job.pid, "progress": job.progress,
        "outputs": job.outputs, "error": job.error,
        "log": job.log_path, "every_s": job.every_s, "not before": _when(job.not_before),
        "ray submission": job.ray_submission_id,
        "accounting": {k: v for k, v in job.accounting.items() if k != "usage"},
    }  # fmt: skip
    shown = {k: v for k, v in fields.items() if v not in (None, "", [], {})}
    console.print(yaml.safe_dump(shown, sort_keys=False, allow_unicode=True).rstrip(), highlight=False)


@app.command("logs")
def logs(
    job_id: JobId,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the job ends.")] = False,
) -> None:
    """Print a job's log (its process's output)."""
    from datagen.jobs.store import FINAL_STATES

    store = open_job_store()
    job = store.get(job_id)
    if job.ray_submission_id:
        from datagen.jobs.ray_submit import print_logs

        print_logs(job, lambda text: console.out(text, end="", highlight=False), follow=follow)
        return
    path = Path(job.log_path or "")
    offset = 0
    while True:
        if path.is_file():
            with path.open("rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
            offset += len(chunk)
            if chunk:
                console.out(chunk.decode(errors="replace"), end="", highlight=False)
        if not follow or store.get(job_id).state in FINAL_STATES:
            if not follow and not path.is_file():
                why = "not started" if job.started_at is None else "it ran inside a worker (--in-process)"
                console.print(f"job {job_id} has no log file: {why}; state {job.state}")
            if follow and path.is_file():  # what was written after the last read
                with path.open("rb") as handle:
                    handle.seek(offset)
                    console.out(handle.read().decode(errors="replace"), end="", highlight=False)
            return
        time.sleep(0.5)


@app.command("cancel")
def cancel(job_id: JobId) -> None:
    """Cancel a queued job now, or a running one (its worker stops its processes; on a Ray
    cluster, Ray's `stop_job`)."""
    store = open_job_store()
    job = store.get(job_id)
    if job.ray_submission_id and job.state not in ("succeeded", "failed", "cancelled"):
        from datagen.jobs.ray_submit import cancel_on_cluster

        job = cancel_on_cluster(store, job)
        console.print(f"{job.id}: {job.state} (Ray job {job.ray_submission_id})")
        return
    job = store.cancel(job_id)
    console.print(f"{job.id}: {job.state}")


@app.command("retry")
def retry(job_id: JobId) -> None:
    """Queue a failed or cancelled job again under the same id (at most --max-attempts runs)."""
    if _again_on_cluster(job_id, bounded=True):
        return
    job = _requeue(job_id, bounded=True)
    console.print(f"{job.id}: queued again (attempt {job.attempts + 1} of {job.max_attempts})")


@app.command("resume")
def resume(job_id: JobId) -> None:
    """Continue a killed or failed job: finished completions come from the LLM-call cache."""
    if _again_on_cluster(job_id, bounded=False):
        return
    job = _requeue(job_id, bounded=False)
    console.print(f"{job.id}: queued to resume")


@app.command("retry-failed")
def retry_failed(job_id: JobId, priority: PriorityOpt = 0) -> None:
    """Re-run a job's dead-letter rows from the stage they failed in; append those that finish."""
    store = open_job_store()
    parent = store.get(job_id)
    if parent.kind == "retry" and parent.parent:
        raise AssayError(f"{job_id} is itself a retry of {parent.parent}; retry-failed that job's id")
    if parent.kind != "pipeline":
        raise AssayError(f"{job_id} is a {parent.kind} job: it has no dead letters; `assay jobs retry` it")
    job = store.submit(
        name=f"{parent.name}-retry", spec_path=parent.spec_path, spec_text=parent.spec_text,
        overrides=parent.overrides, priority=priority, resources=parent.resources, kind="retry",
        parent=job_id,
    )  # fmt: skip
    console.print(f"queued {job.id}: the dead letters of {job_id}")


@app.command("worker")
def worker(
    cpus: Annotated[float | None, typer.Option(help="CPUs to hand out (default: the machine's).")] = None,
    gpus: Annotated[float | None, typer.Option(help="GPUs to hand out (default: the machine's).")] = None,
    memory_gb: Annotated[float | None, typer.Option("--memory-gb", help="Memory (GiB) to hand out.")] = None,
    in_process: Annotated[
        bool, typer.Option("--in-process", help="Run jobs one at a time in this process (one Ray for all).")
    ] = False,
    until_idle: Annotated[
        bool, typer.Option("--until-idle", help="Exit once nothing is left to start.")
    ] = False,
    max_jobs: Annotated[int | None, typer.Option(help="Start at most this many jobs, then exit.")] = None,
    poll: Annotated[float, typer.Option(help="Seconds between looks at the queue.")] = 0.5,
) -> None:  # fmt: skip
    """Run queued jobs: highest priority first, FIFO within a priority, as many as fit."""
    from datagen.jobs.store import Resources
    from datagen.jobs.worker import Worker, machine_resources

    machine = machine_resources()
    capacity = Resources(
        cpus if cpus is not None else machine.cpus,
        gpus if gpus is not None else machine.gpus,
        memory_gb if memory_gb is not None else machine.memory_gb,
    )
    store = open_job_store()
    console.print(f"worker on {store.path}: {capacity.describe()}")
    from datagen.jobs.worker import PIPELINE_RUNNERS
    from loop.job import JOB_KIND

    runners = {**PIPELINE_RUNNERS, JOB_KIND: "loop.job"}  # a loop's steps (assay loop submit)
    worker = Worker(store, _registry_root(), capacity, in_process=in_process, poll_s=poll,
                    log=console.print, runners=runners)  # fmt: skip
    ran = worker.run(until_idle=until_idle, max_jobs=max_jobs)
    console.print(f"worker done: started {ran} job(s)")
