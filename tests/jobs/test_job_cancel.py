"""Cancelling a running job mid-rows stops its process, its Ray and the model actor generating
its rows, and leaves the registry without a version of it, visible or hidden."""

from pathlib import Path

import psutil
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

from datagen.jobs.store import JobState, JobStore, Resources, store_path
from datasets_registry import Registry

ROWS = 400  # far more than the job can finish before it is cancelled


def command_lines(processes: list[psutil.Process]) -> list[str]:
    return [" ".join(safe_cmdline(process)) for process in processes]


# In the default suite: 33-42 s on the shared 2-CPU machine (the job's process starts a Ray of
# its own and loads the model in an actor before the cancel).
def test_cancelling_a_running_job_stops_its_ray_actors_and_registers_nothing(
    tmp_path: Path, tiny_model: Path
) -> None:
    spec = generate_spec(tmp_path, tiny_model, ROWS, name="cancelled")
    reg = tmp_path / "registry"
    store = JobStore(store_path(str(reg)))
    job_id = store.submit(name="cancelled", spec_path=str(spec), spec_text=spec.read_text(), overrides=[],
                          resources=Resources(cpus=2)).id  # fmt: skip
    worker = start_worker(reg)
    wait_until(lambda: cached_calls(reg) >= 3, 600, "the job generating rows", worker)
    pid = store.get(job_id).pid
    assert pid is not None
    job_process = psutil.Process(pid)
    family = descendants(pid)
    actors = [line for line in command_lines(family) if "_GenerateWorker" in line]
    assert actors, command_lines(family)  # the model actor is among the job's processes

    cancelled = assay(reg, "jobs", "cancel", job_id)
    assert cancelled.returncode == 0 and "cancelling" in cancelled.stdout, cancelled.stderr
    out, _ = worker.communicate(timeout=120)
    record = store.get(job_id)
    assert record.state == JobState.CANCELLED, out
    # The worker killed the job's whole process tree (the job, its raylet and GCS, the actor)
    # and waited for it before recording the job cancelled: nothing is left even for a moment.
    assert wait_gone([job_process, *family], 2) == []
    assert cached_calls(reg) < ROWS  # it was stopped mid-rows, not after

    registry = Registry(reg)
    assert registry.names() == []
    # Not even a hidden version: the job never opened its outputs, and gc finds nothing.
    assert [info for info in registry.catalog.rows(include_hidden=True) if info.job_id == job_id] == []
    assert job_id not in registry.catalog.jobs.latest()
    assert not Path(registry.dataset_uri("cancelled-out")).exists()
    assert registry.gc() == []
