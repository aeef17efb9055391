"""A job killed half-way through its `execute` stage (kill -9 of the job's process) and resumed
executes only the programs it had not finished: the others come from the stage-result cache,
and the registered dataset equals an uninterrupted run's."""

import os
import signal
from pathlib import Path

import pytest
from execute_jobs import table_rows, without_wall_time, write_execute_pipeline
from generation_jobs import assay, descendants, start_worker, wait_gone, wait_until

from datagen.job import cache_uri, prepare_job, run_job
from datagen.jobs.store import JobState, JobStore, Resources, store_path
from datagen.spec import load_spec
from datagen.stage_cache import stage_results_uri
from datasets_registry import Registry
from model_store import ModelStore

ROWS = 60


def execute_spec(folder: Path) -> Path:
    """ROWS distinct programs that each sleep 0.3 s (so the stage lasts long enough to be killed
    in), every third one passing its test, through one execute stage."""
    rows = [
        {"id": f"p{k:03d}", "language": "python", "tests": "assert add(1, 2) == 3\n",
         "solution": f"import time\ntime.sleep(0.3)\ndef add(a, b):\n    return a + b + {k % 3} + 0 * {k}\n"}
        for k in range(ROWS)
    ]  # fmt: skip
    return write_execute_pipeline(
        folder, rows, name="resumable-execute", output="resumable-execute-out",
        sandbox={"backend": "docker", "pool_size": 2}, ray={"num_cpus": 2},
    )  # fmt: skip


def stored_results(registry: Path) -> int:
    """Rows the registry's stage-result cache holds so far."""
    return table_rows(stage_results_uri(cache_uri(Registry(registry))))


def comparable(registry: Registry, ref: str) -> list[dict]:
    """The registered rows, by id, without each program's wall time (a run measures its own)."""
    rows = registry.open(ref).to_arrow().to_pylist()
    return sorted((without_wall_time(row) for row in rows), key=lambda row: row["id"])


# Slow: a worker's job process starts a Ray and a sandbox twice, and the spec runs once more
# uninterrupted (a minute or more on a shared 2-CPU machine).
@pytest.mark.slow
@pytest.mark.docker
def test_a_killed_execute_stage_resumes_without_executing_finished_programs(
    tmp_path: Path, ray_local: None
) -> None:
    spec = execute_spec(tmp_path)
    clean = Registry(tmp_path / "clean")  # uninterrupted, without any cache (--no-cache)
    plain = run_job(prepare_job(load_spec(spec), clean, ModelStore(tmp_path / "models"), use_cache=False),
                    clean, log=print)  # fmt: skip
    assert plain.stage_metrics["execute"]["stage_cache"] == {"hits": 0, "computed": ROWS}

    reg = tmp_path / "registry"
    store = JobStore(store_path(str(reg)))
    job_id = store.submit(name="resumable-execute", spec_path=str(spec), spec_text=spec.read_text(),
                          overrides=[], resources=Resources(cpus=2)).id  # fmt: skip
    first = start_worker(reg)
    wait_until(lambda: stored_results(reg) >= ROWS // 3, 600, "a third of the programs executed", first)
    pid = store.get(job_id).pid
    assert pid is not None
    family = descendants(pid)  # the job's Ray: the sandbox actor goes on putting until it dies
    os.kill(pid, signal.SIGKILL)
    first.communicate(timeout=120)
    wait_gone(family, 60)
    done = stored_results(reg)
    assert ROWS // 3 <= done < ROWS, "the job was not killed half-way"
    assert store.get(job_id).state == JobState.FAILED

    resumed = assay(reg, "jobs", "resume", job_id)
    assert resumed.returncode == 0, resumed.stderr
    out, _ = start_worker(reg).communicate(timeout=600)
    record = store.get(job_id)
    assert record.state == JobState.SUCCEEDED and record.attempts == 2, out
    # Every program finished before the kill came from the cache; only the rest were executed.
    assert record.accounting["stage_cache_hits"] == done
    registry = Registry(reg)
    lineage = registry.open("resumable-execute-out").info.lineage
    assert lineage.metrics["stages"]["execute"]["stage_cache"] == {"hits": done, "computed": ROWS - done}
    assert stored_results(reg) == ROWS
    assert comparable(registry, "resumable-execute-out") == comparable(clean, plain.outputs[0].ref)
