"""A loop's steps as jobs: `assay loop submit` queues one job per step, each after the one before;
`assay jobs worker` runs each in its own process; a failed step fails the jobs after it, and
`assay loop resume NAME --jobs` queues the steps not done, which then finish the loop."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import yaml

from datagen.jobs.store import JobStore, store_path
from datasets_registry import Registry
from datasets_registry.kinds import MESSAGES_TYPE
from loop.state import load_state
from model_store import ModelLineage, ModelStore

ASSAY = str(Path(sys.executable).parent / "assay")
STEPS = ["eval:start", "expert:a", "eval:a", "gates"]


def assay(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ASSAY, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_each_step_runs_as_a_job_and_a_failed_step_resumes_as_jobs(
    tmp_path: Path, tiny_model: Path, registry: Registry
) -> None:
    reply = {"role": "assistant", "content": "Blue."}
    messages = [[{"role": "user", "content": f"Name a colour, {i}."}, reply] for i in range(4)]
    data = registry.write("colours", pa.table({"messages": pa.array(messages, MESSAGES_TYPE)}), kind="sft")
    train = {"max_steps": 1, "max_length": 128, "micro_batch_size": 2, "torch_threads": 1}
    spec = {
        "name": "job-loop",
        "start": str(tiny_model),
        "evaluation": {"suites": ["xstest"], "limit": 1, "max_tokens": 4},
        "experts": [{"name": "a", "domain": "xstest", "dataset": data.ref, "train": train}],
    }
    (tmp_path / "loop.yaml").write_text(yaml.safe_dump(spec))
    home = tmp_path / "home"
    env = {**os.environ, "ASSAY_HOME": str(home), "ASSAY_REGISTRY": str(registry.root)}

    submitted = assay(env, "loop", "submit", str(tmp_path / "loop.yaml"))
    assert submitted.returncode == 0, submitted.stderr
    jobs = sorted(JobStore(store_path(str(registry.root))).list(), key=lambda job: job.submitted_at)
    assert [yaml.safe_load(job.spec_text)["step"] for job in jobs] == STEPS
    assert [job.after for job in jobs] == [None] + [job.id for job in jobs[:-1]]  # a chain
    assert {job.kind for job in jobs} == {"loop-step"}
    assert {job.cpus for job in jobs} == {float(os.cpu_count() or 1)}  # a step trains on every CPU

    # A model already stored under the expert's name makes `expert:a` fail when it runs.
    store = ModelStore(home / "models")
    shutil.copytree(tiny_model, tmp_path / "squatter")
    store.register(
        "job-loop-a", tmp_path / "squatter", kind="sft", lineage=ModelLineage(datasets=["other@1"])
    )
    worker = assay(env, "jobs", "worker", "--until-idle", "--cpus", "2", "--poll", "0.2", timeout=600)
    assert worker.returncode == 0, worker.stdout + worker.stderr
    states = {yaml.safe_load(j.spec_text)["step"]: j for j in JobStore(store_path(str(registry.root))).list()}
    assert [states[step].state for step in STEPS] == ["succeeded", "failed", "failed", "failed"]
    assert "is stored but was not trained on colours@1" in (states["expert:a"].error or "")
    assert states["eval:a"].error == f"job {states['expert:a'].id} it waited for is failed"
    saved = load_state(home, "job-loop")
    assert saved.steps["eval:start"].status == "done" and saved.steps["expert:a"].status == "failed"
    assert states["eval:start"].outputs == []  # an evaluation registers nothing

    # Remove the squatter; resuming as jobs queues only the steps not done, and they finish.
    shutil.rmtree(store.path("job-loop-a"))
    resumed = assay(env, "loop", "resume", "job-loop", "--jobs")
    assert resumed.returncode == 0 and "queued 3 step jobs" in resumed.stdout, resumed.stdout + resumed.stderr
    worker = assay(env, "jobs", "worker", "--until-idle", "--cpus", "2", "--poll", "0.2", timeout=600)
    assert worker.returncode == 0, worker.stdout + worker.stderr
    saved = load_state(home, "job-loop")
    assert [step for step, record in saved.steps.items() if record.status == "done"] == STEPS
    assert store.record("job-loop-a")["lineage"]["datasets"] == [data.ref]
    expert_jobs = [
        j for j in JobStore(store_path(str(registry.root))).list() if j.name == "job-loop.expert-a"
    ]
    assert sorted(j.outputs for j in expert_jobs) == [[], ["job-loop-a"]]  # failed once, then trained
    shown = assay(env, "loop", "show", "job-loop", "--json")
    assert json.loads(shown.stdout)["steps"]["gates"]["status"] == "done"
