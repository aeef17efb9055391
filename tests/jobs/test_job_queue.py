"""The job store and worker: concurrent submitters lose nothing, priorities then FIFO, bad
specs and oversized requests refused at submit, cancel and retry under the same id."""

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from assay.errors import AssayError
from datagen.jobs.store import JobState, JobStore, Resources, store_path
from datagen.jobs.worker import Worker

ASSAY = str(Path(sys.executable).parent / "assay")


def render_spec(folder: Path, rows: int = 2, name: str = "tiny") -> Path:
    """A pipeline with one render stage over a few rows: a job that costs a fraction of a second."""
    (folder / "rows.jsonl").write_text("".join(f'{{"id": "r{i}", "prompt": "p{i}"}}\n' for i in range(rows)))
    (folder / "t.j2").write_text("{{ prompt }}")
    spec = {
        "name": name,
        "source": {"path": "rows.jsonl"},
        "stages": [{"type": "render", "template": "t.j2"}],
        "outputs": [{"dataset": f"{name}-out", "kind": "generic"}],
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def submit(store: JobStore, spec: Path, priority: int = 0, **kwargs: object) -> str:
    return store.submit(
        name=yaml.safe_load(spec.read_text())["name"], spec_path=str(spec), spec_text=spec.read_text(),
        overrides=[], priority=priority, **kwargs,
    ).id  # fmt: skip


def _submit_many(
    db: str, spec: str, client: int, count: int, start: "multiprocessing.synchronize.Event"
) -> None:
    store = JobStore(db)
    start.wait()
    for i in range(count):
        submit(store, Path(spec), priority=i % 3)


def test_two_clients_submitting_at_once_lose_no_job(tmp_path: Path) -> None:
    db = str(tmp_path / "jobs.sqlite")
    spec = render_spec(tmp_path)
    JobStore(db)  # created before the race, as a worker would have
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    clients = [context.Process(target=_submit_many, args=(db, str(spec), c, 150, start)) for c in range(2)]
    for process in clients:
        process.start()
    start.set()
    for process in clients:
        process.join(timeout=120)
    assert [process.exitcode for process in clients] == [0, 0]
    jobs = JobStore(db).list()
    assert len(jobs) == len({job.id for job in jobs}) == 300
    assert sorted(job.seq for job in jobs) == list(range(1, 301))


def test_claims_go_by_priority_then_submission_and_respect_resources(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    spec = render_spec(tmp_path)
    low = submit(store, spec, priority=0)
    big = submit(store, spec, priority=5, resources=Resources(cpus=8))
    high = [submit(store, spec, priority=5) for _ in range(2)]
    # The big job heads the queue but does not fit: nothing behind it jumps ahead.
    assert store.claim_next(Resources(cpus=4)) is None
    assert store.claim_next(Resources(cpus=8)).id == big
    assert [store.claim_next(Resources(cpus=1)).id for _ in range(3)] == [*high, low]
    assert store.claim_next(Resources(cpus=8)) is None
    record = store.get(low)
    assert (record.state, record.attempts) == (JobState.RUNNING, 1)


def test_after_waits_for_success_and_fails_when_its_job_fails(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    spec = render_spec(tmp_path)
    first = submit(store, spec)
    second = submit(store, spec, after=first, priority=9)
    assert store.claim_next(Resources()).id == first  # the higher priority waits for `first`
    assert store.claim_next(Resources()) is None
    store.finish(first, JobState.SUCCEEDED)
    assert store.claim_next(Resources()).id == second
    third = submit(store, spec, after=second)
    store.finish(second, JobState.FAILED, "boom")
    assert store.claim_next(Resources()) is None
    assert store.get(third).state == JobState.FAILED and second in (store.get(third).error or "")
    with pytest.raises(AssayError, match="no such job"):
        submit(store, spec, after="nope")


def test_cancel_retry_and_resume_keep_the_id_and_bound_the_attempts(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    spec = render_spec(tmp_path)
    queued = submit(store, spec)
    assert store.cancel(queued).state == JobState.CANCELLED
    job = submit(store, spec, max_attempts=2)
    store.claim_next(Resources())
    assert store.cancel(job).state == JobState.CANCELLING
    assert store.finish(job, JobState.SUCCEEDED).state == JobState.CANCELLED  # cancel wins
    assert store.requeue(job, bounded=True).state == JobState.QUEUED
    assert store.claim_next(Resources()).attempts == 2
    store.finish(job, JobState.FAILED, "boom")
    with pytest.raises(AssayError, match="used 2 of 2 attempts"):
        store.requeue(job, bounded=True)
    assert store.requeue(job, bounded=False).id == job  # resume is not bounded


def test_resume_of_a_job_whose_process_is_gone_records_it_failed_then_queues_it(tmp_path: Path) -> None:
    """An `--in-process` worker killed with its job leaves the job `running`; `resume` must not
    refuse it as running, nor touch a running job whose process lives."""
    reg = tmp_path / "registry"
    store = JobStore(store_path(str(reg)))
    spec = render_spec(tmp_path)
    lost, alive = submit(store, spec), submit(store, spec)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    store.claim_next(Resources())
    store.update(lost, pid=int(gone.stdout))  # a process that has exited
    store.claim_next(Resources())
    store.update(alive, pid=os.getpid())
    env = {**os.environ, "ASSAY_REGISTRY": str(reg)}
    resumed = subprocess.run([ASSAY, "jobs", "resume", lost], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "process is gone" in resumed.stdout and store.get(lost).state == JobState.QUEUED
    refused = subprocess.run([ASSAY, "jobs", "resume", alive], env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "is running" in refused.stderr
    assert store.get(alive).state == JobState.RUNNING


def test_fifty_jobs_in_three_priorities_finish_in_order(tmp_path: Path, ray_local: None) -> None:
    reg = tmp_path / "registry"
    store = JobStore(store_path(str(reg)))
    specs = {p: render_spec(tmp_path, name=f"p{p}") for p in (0, 1, 2)}
    ids = [submit(store, specs[i % 3], priority=i % 3) for i in range(50)]
    Worker(store, str(reg), Resources(cpus=2), in_process=True, poll_s=0.05).run(until_idle=True)
    jobs = [store.get(job_id) for job_id in ids]
    assert {job.state for job in jobs} == {JobState.SUCCEEDED}
    by_start = sorted(jobs, key=lambda job: job.started_at or 0)
    assert [(job.priority, job.seq) for job in by_start] == sorted(
        ((job.priority, job.seq) for job in jobs), key=lambda key: (-key[0], key[1])
    )
    assert all(job.outputs and job.accounting["rows_in"] == 2 for job in jobs)


def test_a_thousand_queued_no_op_jobs_all_finish_in_order(tmp_path: Path, ray_local: None) -> None:
    import time

    import noop_jobs

    store = JobStore(store_path(str(tmp_path / "registry")))
    spec = render_spec(tmp_path)
    ids = [submit(store, spec, priority=i % 3, kind=noop_jobs.KIND) for i in range(1000)]
    started = time.monotonic()
    worker = Worker(store, str(tmp_path / "registry"), Resources(cpus=2), in_process=True, poll_s=0.01,
                    log=lambda _: None, runners={noop_jobs.KIND: "noop_jobs"})  # fmt: skip
    assert worker.run(until_idle=True) == 1000
    print(f"1000 no-op jobs through the queue in {time.monotonic() - started:.1f} s")
    jobs = [store.get(job_id) for job_id in ids]
    assert {job.state for job in jobs} == {JobState.SUCCEEDED}
    by_start = sorted(jobs, key=lambda job: (job.started_at or 0, job.seq))
    assert [(job.priority, job.seq) for job in by_start] == sorted(
        ((job.priority, job.seq) for job in jobs), key=lambda key: (-key[0], key[1])
    )


def run_cli(*args: str, registry: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ASSAY_REGISTRY": str(registry)}
    return subprocess.run([ASSAY, *args], env=env, capture_output=True, text=True, timeout=120)


def test_a_bad_spec_or_an_oversized_request_is_refused_in_one_line(tmp_path: Path) -> None:
    reg = tmp_path / "registry"
    (tmp_path / "corrupt.yaml").write_text("name: x\nstages: [\n")
    (tmp_path / "invalid.yaml").write_text("name: x\nsource: {path: a.jsonl}\nstages: [{type: nope}]\n")
    for spec in ("corrupt.yaml", "invalid.yaml", "missing.yaml", "."):  # "." cannot be read as a file
        result = run_cli("jobs", "submit", str(tmp_path / spec), registry=reg)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("error:") and len(result.stderr.strip().splitlines()) == 1, (
            result.stderr
        )
    spec = render_spec(tmp_path)
    result = run_cli("jobs", "submit", str(spec), "--cpus", "4096", "--memory-gb", "1", registry=reg)
    assert result.returncode == 2
    assert f"CPUs 4096 > {os.cpu_count()}" in result.stderr and "GiB" in result.stderr
    assert JobStore(store_path(str(reg))).list() == []
    ok = run_cli("jobs", "submit", str(spec), "--priority", "3", registry=reg)
    assert ok.returncode == 0 and "queued tiny-" in ok.stdout
    listed = run_cli("jobs", "list", registry=reg)
    assert "1 queued" in listed.stdout and "tiny-" in listed.stdout
    as_json = json.loads(run_cli("jobs", "list", "--json", registry=reg).stdout)
    assert as_json["counts"] == {"queued": 1} and as_json["jobs"][0]["priority"] == 3
    (job,) = as_json["jobs"]
    shown = json.loads(run_cli("jobs", "show", job["id"], "--json", registry=reg).stdout)
    assert shown["id"] == job["id"] and shown["state"] == "queued" and shown["spec_hash"] == job["spec_hash"]


def test_a_job_of_a_kind_the_worker_does_not_run_fails_with_the_reason(tmp_path: Path) -> None:
    reg = tmp_path / "registry"
    store = JobStore(store_path(str(reg)))
    job = store.submit(name="a-loop.gates", kind="loop-step", spec_path="loop.yaml",
                       spec_text="{loop: a-loop, step: gates}\n", overrides=[])  # fmt: skip
    Worker(store, str(reg), Resources(cpus=2), in_process=True, poll_s=0.05).run(until_idle=True)
    failed = store.get(job.id)
    assert failed.state == JobState.FAILED and failed.error == "this worker runs no loop-step jobs"
