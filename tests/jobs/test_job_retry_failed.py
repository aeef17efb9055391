"""`retry-failed` re-runs only a job's dead letters and appends the rows that now finish, with
lineage to both; a scheduled job queues its next run."""

import json
import time
from pathlib import Path

import yaml

from datagen.jobs.store import JobState, JobStore, store_path
from datagen.jobs.worker import Resources, Worker
from datasets_registry import Registry


def test_retry_failed_recovers_the_dead_letters_as_a_new_version(tmp_path: Path, ray_local: None) -> None:
    rows = [{"id": f"r{i}", "prompt": f"p{i}"} | ({"extra": "x"} if i < 3 else {}) for i in range(5)]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    template = tmp_path / "t.j2"
    template.write_text("{{ prompt }} {{ extra }}")  # rows without `extra` fail in render
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "flaky", "source": {"path": "rows.jsonl"},
        "stages": [{"type": "render", "template": "t.j2", "name": "render"}],
        "outputs": [{"dataset": "flaky-out", "kind": "generic"}],
    }))  # fmt: skip
    reg = tmp_path / "registry"
    store = JobStore(store_path(str(reg)))
    worker = Worker(store, str(reg), Resources(cpus=2), in_process=True, poll_s=0.05)
    first = store.submit(name="flaky", spec_path=str(spec), spec_text=spec.read_text(), overrides=[])
    worker.run(until_idle=True)
    registry = Registry(reg)
    assert registry.open("flaky-out").num_rows == 3
    assert registry.open("flaky-dead-letter").num_rows == 2

    template.write_text("{{ prompt }}")  # the cause is fixed
    retry = store.submit(name="flaky-retry", spec_path=str(spec), spec_text=spec.read_text(), overrides=[],
                         kind="retry", parent=first.id)  # fmt: skip
    worker.run(until_idle=True)
    assert store.get(retry.id).state == JobState.SUCCEEDED, store.get(retry.id).error
    recovered = registry.open("flaky-out")
    assert recovered.version == 2 and recovered.num_rows == 5  # appended to the first job's rows
    assert sorted(recovered.to_arrow(columns=["id"])["id"].to_pylist()) == [f"r{i}" for i in range(5)]
    sources = recovered.info.lineage.sources
    dead_letters = registry.open("flaky-dead-letter").ref
    assert sources[1:] == [dead_letters, "flaky-out@1"]  # after the retry's own rows file
    assert store.get(retry.id).accounting["rows_in"] == 2  # only the dead letters ran


def test_a_scheduled_job_queues_its_next_run(tmp_path: Path, ray_local: None) -> None:
    (tmp_path / "rows.jsonl").write_text('{"id": "a", "prompt": "p"}\n')
    (tmp_path / "t.j2").write_text("{{ prompt }}")
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "nightly", "source": {"path": "rows.jsonl"},
        "stages": [{"type": "render", "template": "t.j2"}],
        "outputs": [{"dataset": "nightly-out", "kind": "generic"}],
    }))  # fmt: skip
    reg = tmp_path / "registry"
    store = JobStore(store_path(str(reg)))
    store.submit(name="nightly", spec_path=str(spec), spec_text=spec.read_text(), overrides=[], every_s=3600)
    Worker(store, str(reg), Resources(cpus=2), in_process=True, poll_s=0.05).run(until_idle=True)
    done, following = sorted(store.list(), key=lambda job: job.seq)
    assert done.state == JobState.SUCCEEDED and following.state == JobState.QUEUED
    assert following.not_before is not None and 3500 < following.not_before - time.time() <= 3600
