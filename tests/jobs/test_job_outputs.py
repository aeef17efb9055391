"""A job's outputs land together: a job killed between two outputs shows neither, its re-run
shows both (and not the killed attempt's version), and gc removes a dead job's hidden versions."""

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from datagen.jobs.runner import KILL_AFTER_OUTPUTS_ENV
from datagen.jobs.store import JobState, JobStore, Resources, store_path
from datasets_registry import Lineage, Registry


def two_output_spec(folder: Path) -> Path:
    (folder / "rows.jsonl").write_text("".join(f'{{"id": "r{i}", "prompt": "p{i}"}}\n' for i in range(3)))
    (folder / "t.j2").write_text("{{ prompt }}")
    spec = {
        "name": "pair",
        "source": {"path": "rows.jsonl"},
        "stages": [{"type": "render", "template": "t.j2"}],
        "outputs": [
            {"dataset": "first-out", "kind": "generic"},
            {"dataset": "second-out", "kind": "generic"},
        ],
        "ray": {"num_cpus": 1},
    }
    path = folder / "pair.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def run_claimed(store: JobStore, job_id: str, registry: Path, env: dict[str, str]) -> int:
    """Run a claimed job the way the worker does: its own process."""
    command = [sys.executable, "-m", "datagen.jobs.runner", job_id, "--store", str(store.path),
               "--registry", str(registry)]  # fmt: skip
    return subprocess.run(command, env={**os.environ, **env}, capture_output=True, timeout=300).returncode


def test_a_job_killed_between_two_outputs_registers_neither(tmp_path: Path) -> None:
    spec = two_output_spec(tmp_path)
    reg = tmp_path / "registry"
    store = JobStore(store_path(str(reg)))
    job_id = store.submit(name="pair", spec_path=str(spec), spec_text=spec.read_text(), overrides=[]).id
    store.claim_next(Resources())
    code = run_claimed(store, job_id, reg, {KILL_AFTER_OUTPUTS_ENV: "1"})
    assert code == -9  # killed right after the first output's version was written
    registry = Registry(reg)
    assert [info.name for info in registry.catalog.rows(include_hidden=True)] == ["first-out"]
    assert registry.names() == []  # ... which no reader sees
    with pytest.raises(Exception, match="no dataset named 'first-out'"):
        registry.open("first-out")

    store.finish(job_id, JobState.FAILED, "killed")
    store.requeue(job_id, bounded=False)
    store.claim_next(Resources())
    assert run_claimed(store, job_id, reg, {}) == 0
    registry = Registry(reg)
    assert registry.names() == ["first-out", "second-out"]
    assert [info.version for info in registry.versions("first-out")] == [3]  # 1: killed, 2: restore
    assert registry.open("first-out").num_rows == registry.open("second-out").num_rows == 3
    assert store.get(job_id).outputs == ["first-out@3", "second-out@1"]


def test_gc_removes_the_hidden_versions_of_a_dead_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datasets_registry.registry as registry_module

    registry = Registry(tmp_path / "registry")
    registry.write("kept", pa.table({"x": [1]}))
    registry.begin_job("dead-job")  # a job that wrote one output and died
    registry.write("kept", pa.table({"x": [2, 3]}), lineage=Lineage(job_id="dead-job"), mode="append")
    assert registry.open("kept").num_rows == 1
    registry.gc()  # within the grace period: a job that may still be running is left alone
    assert len(registry.catalog.rows(include_hidden=True)) == 2
    monkeypatch.setattr(registry_module, "UNREGISTERED_GRACE", timedelta(0))
    registry.gc()
    assert [(i.name, i.version) for i in registry.catalog.rows(include_hidden=True)] == [("kept", 1)]
    # An append after the abort builds on the registered rows, not on the dead job's.
    assert registry.write("kept", pa.table({"x": [4]}), mode="append").num_rows == 2
