"""A job killed half-way through a 200-row generation (kill -9 of the job's process, or of the
`--in-process` worker that runs it) and resumed loses no row, generates no completion twice,
and registers what an uninterrupted run with the same seed registers."""

import os
import signal
from pathlib import Path

import pytest
from generation_jobs import (
    assay,
    cached_calls,
    descendants,
    generate_spec,
    safe_cmdline,
    start_worker,
    wait_gone,
    wait_until,
)

from datagen.job import prepare_job, run_job
from datagen.jobs.store import JobState, JobStore, Resources, store_path
from datagen.spec import load_spec
from datasets_registry import Registry
from model_store import ModelStore

ROWS = 200
RAY_AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")
Rows = list[tuple[str, list[str]]]  # (id, completion texts), sorted


def comparable(registry: Registry) -> Rows:
    rows = registry.open("resumable-out").to_arrow(columns=["id", "completions"]).to_pylist()
    return sorted((row["id"], [c["text"] for c in row["completions"]]) for row in rows)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, ray_local: None) -> Rows:
    """The same spec and seed run uninterrupted, in a registry of its own (its own cache)."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    spec = generate_spec(folder, tiny_model, ROWS)
    clean = Registry(folder / "registry")
    run_job(prepare_job(load_spec(spec), clean, ModelStore(folder / "models")), clean, log=print)
    return comparable(clean)


# Slow: two job processes each start a Ray and generate 400 completions in all, and the module
# runs the same spec once more uninterrupted (minutes on a shared 2-CPU machine).
@pytest.mark.slow
@pytest.mark.parametrize("victim", ["job-process", "worker"])
def test_a_killed_job_resumes_without_losing_or_repeating_work(
    tmp_path: Path, tiny_model: Path, uninterrupted: Rows, victim: str
) -> None:
    """victim `job-process`: a worker runs the job in a process of its own, and that process
    is killed (the worker records it failed). `worker`: an `--in-process` worker, which runs
    the job in its own process, is killed; the job stays `running` with its process gone, and
    `resume` records it failed before queueing it."""
    spec = generate_spec(tmp_path, tiny_model, ROWS)
    reg = tmp_path / "registry"
    store = JobStore(store_path(str(reg)))
    job_id = store.submit(name="resumable", spec_path=str(spec), spec_text=spec.read_text(), overrides=[],
                          resources=Resources(cpus=2)).id  # fmt: skip
    mode = ["--in-process"] if victim == "worker" else []
    first = start_worker(reg, *mode)
    wait_until(lambda: cached_calls(reg) >= ROWS // 2, 600, "half the rows generated", first)
    pid = first.pid if victim == "worker" else store.get(job_id).pid
    assert pid is not None
    family = descendants(pid)  # the job's Ray: raylet, GCS, workers, the model actor
    os.kill(pid, signal.SIGKILL)
    first.communicate(timeout=120)
    # Ray binds its processes to the killed one: none that could generate may go on. Ray's
    # dashboard and runtime-env agents of a killed in-process worker can outlive it (they
    # generate nothing; docs/jobs.md): killed here, not waited for.
    agents = [p for p in family if any(a in " ".join(safe_cmdline(p)) for a in RAY_AGENTS)]
    working = [p for p in family if p not in agents]
    assert wait_gone(working, 60) == [], "Ray processes of the killed job still run"
    wait_gone(agents, 0)
    done = cached_calls(reg)
    record = store.get(job_id)
    if victim == "worker":
        assert record.state == JobState.RUNNING  # nobody was left to record the end
    else:
        assert record.state == JobState.FAILED and "signal 9" in (record.error or "")
    assert ROWS // 2 <= done < ROWS, "the job was not killed half-way"
    assert Registry(reg).names() == []  # nothing registered by the killed attempt

    resumed = assay(reg, "jobs", "resume", job_id)
    assert resumed.returncode == 0, resumed.stderr
    assert ("process is gone" in resumed.stdout) == (victim == "worker"), resumed.stdout
    out, _ = start_worker(reg, *mode).communicate(timeout=600)
    record = store.get(job_id)
    assert record.state == JobState.SUCCEEDED and record.attempts == 2, out
    # Every completion finished before the kill came from the cache; only the rest were
    # generated (n = 2 per row), and each call is stored once.
    assert record.accounting["cache_hits"] == 2 * done
    assert record.accounting["completions"] == 2 * (ROWS - done)
    assert cached_calls(reg) == ROWS
    registry = Registry(reg)
    assert registry.open("resumable-out").num_rows == ROWS  # no row lost
    assert registry.open("resumable-out").info.lineage.job_id == job_id
    assert comparable(registry) == uninterrupted  # completion for completion
