"""A job killed half-way (kill -9 of its process) and resumed loses no row, generates no
completion twice, and registers what an uninterrupted run with the same seed registers."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lance
import pytest
import yaml

from datagen.job import cache_uri, prepare_job, run_job
from datagen.jobs.store import JobState, JobStore, Resources, store_path
from datagen.spec import load_spec
from datasets_registry import Registry
from model_store import ModelStore

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT / "datagen" / "seeds" / "ifeval_multilingual.jsonl"
ASSAY = str(Path(sys.executable).parent / "assay")


def generate_spec(folder: Path, model: Path, rows: int) -> Path:
    lines = SEEDS.read_text().splitlines()
    (folder / "rows.jsonl").write_text("\n".join((lines * (rows // len(lines) + 1))[:rows]))
    (folder / "t.j2").write_text("{{ prompt }}")
    spec = {
        "name": "resumable",
        "source": {"path": "rows.jsonl"},
        "stages": [
            {"type": "render", "template": "t.j2"},
            {
                "type": "generate",
                "name": "generate",
                "engine": {"model": str(model), "batch_size": 1, "torch_threads": 1},
                "sampling": {"n": 2, "temperature": [0.7, 1.2], "max_tokens": 24, "seed": 7},
            },
        ],  # fmt: skip
        "outputs": [{"dataset": "resumable-out", "kind": "generic"}],
        "ray": {"num_cpus": 2},
    }
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def cached_calls(registry: Path) -> int:
    try:
        return lance.dataset(cache_uri(Registry(registry))).count_rows()
    except (FileNotFoundError, ValueError):
        return 0


def worker(registry: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "ASSAY_REGISTRY": str(registry)}
    return subprocess.Popen([ASSAY, "jobs", "worker", "--until-idle", "--cpus", "2", "--poll", "0.2"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip


def comparable(registry: Registry) -> list[tuple[str, list[str]]]:
    rows = registry.open("resumable-out").to_arrow(columns=["id", "completions"]).to_pylist()
    return sorted((row["id"], [c["text"] for c in row["completions"]]) for row in rows)


# Slow: two job processes each start a Ray (about 100 s in all on a shared 2-CPU machine),
# more than the default suite's budget for these tests.
@pytest.mark.slow
@pytest.mark.parametrize("rows", [30, 200], ids=["30-rows", "200-rows"])
def test_a_killed_job_resumes_without_losing_or_repeating_work(
    tmp_path: Path, tiny_model: Path, ray_local: None, rows: int
) -> None:
    spec = generate_spec(tmp_path, tiny_model, rows)
    reg = tmp_path / "registry"
    store = JobStore(store_path(str(reg)))
    job_id = store.submit(name="resumable", spec_path=str(spec), spec_text=spec.read_text(), overrides=[],
                          resources=Resources(cpus=2)).id  # fmt: skip
    first = worker(reg)
    deadline = time.time() + 240
    while cached_calls(reg) < 5:
        assert first.poll() is None, first.stdout.read() if first.stdout else ""
        assert time.time() < deadline, "the job never cached a row"
        time.sleep(0.05)
    pid = store.get(job_id).pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # the job's process, not the worker
    out, _ = first.communicate(timeout=120)
    done = cached_calls(reg)
    record = store.get(job_id)
    assert record.state == JobState.FAILED and "signal 9" in (record.error or ""), out
    assert 5 <= done < rows, "the job was not killed half-way"
    assert Registry(reg).names() == []  # nothing registered by the killed attempt

    env = {**os.environ, "ASSAY_REGISTRY": str(reg)}
    resumed = subprocess.run([ASSAY, "jobs", "resume", job_id], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    out, _ = worker(reg).communicate(timeout=600)
    record = store.get(job_id)
    assert record.state == JobState.SUCCEEDED and record.attempts == 2, out
    # Every completion finished before the kill came from the cache; only the rest were generated.
    assert record.accounting["cache_hits"] == 2 * done
    assert record.accounting["completions"] == 2 * (rows - done)
    registry = Registry(reg)
    assert registry.open("resumable-out").num_rows == rows  # no row lost
    assert registry.open("resumable-out").info.lineage.job_id == job_id

    # The same spec and seed, uninterrupted, in a registry of its own (its own cache).
    clean = Registry(tmp_path / "clean")
    run_job(prepare_job(load_spec(spec), clean, ModelStore(tmp_path / "m")), clean, log=print)
    assert comparable(registry) == comparable(clean)
