"""A loop's steps as jobs of the job system: one job per step, each waiting for the one before.

`assay loop submit` queues them (`submit_steps`); `assay jobs worker` runs each in a process of
its own (`python -m loop.job JOB --store DB --registry ROOT`), which runs that one step of the
loop and saves the loop state, as `assay loop run` does in the foreground. A failed step fails
its job, and the jobs after it fail as their dependency did; `assay loop resume NAME --jobs`
queues the steps not done again. `assay jobs list` shows every step's job, `assay loop show`
the loop.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from datagen.jobs.store import JobRecord, JobState, JobStore, Resources
from loop.spec import LoopSpec

JOB_KIND = "loop-step"


def submit_steps(
    store: JobStore,
    spec_path: str,
    loop: str,
    steps: list[str],
    *,
    priority: int = 0,
    resources: Resources | None = None,
) -> list[JobRecord]:
    """Queue one job per step, in order, each after the one before; the jobs."""
    jobs: list[JobRecord] = []
    for step in steps:
        jobs.append(
            store.submit(
                name=f"{loop}.{step.replace(':', '-')}",
                kind=JOB_KIND,
                spec_path=spec_path,
                spec_text=yaml.safe_dump({"loop": loop, "step": step}),
                overrides=[],
                priority=priority,
                resources=resources,
                after=jobs[-1].id if jobs else None,
            )
        )
    return jobs


def run_stored_job(store: JobStore, job_id: str, registry_root: str) -> JobState:
    """Run a claimed step job to its end and record it; returns the final state."""
    from assay.settings import assay_home, model_store_dir
    from datagen.jobs.runner import run_recorded
    from datasets_registry import Registry
    from loop.context import LoopContext
    from loop.evaluation import evaluate_summary
    from loop.runner import run_step
    from loop.state import load_state, loop_lock
    from model_store import ModelStore

    job = store.get(job_id)

    def run() -> None:
        target = yaml.safe_load(job.spec_text)
        home = assay_home()
        context = LoopContext(
            registry=Registry(registry_root),
            store=ModelStore(model_store_dir()),
            home=home,
            evaluate=evaluate_summary,
            log=lambda line: print(line, flush=True),
        )
        with loop_lock(home, target["loop"]):
            state = load_state(home, target["loop"])
            result = run_step(LoopSpec.model_validate(state.spec), state, context, target["step"])
        store.update(job_id, progress={"phase": "done"}, outputs=_outputs(target["step"], result))

    return run_recorded(store, job_id, run)


def _outputs(step: str, result: dict[str, Any]) -> list[str]:
    """What a step registered: its datasets' versions and its model (an evaluation registers
    none: it stores its results with the model it measured)."""
    if step.startswith("eval:") or step == "gates":
        return []
    outputs = list(result.get("outputs", {}).values())
    return outputs + ([result["model"]] if "model" in result else [])


def main(argv: list[str] | None = None) -> int:
    """Entry point of a step job's process: `python -m loop.job --store DB --registry ROOT ID`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("job_id")
    parser.add_argument("--store", required=True)
    parser.add_argument("--registry", required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("LANCE_LOG", "error")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    state = run_stored_job(JobStore(Path(args.store)), args.job_id, args.registry)
    return 0 if state == JobState.SUCCEEDED else 1


if __name__ == "__main__":
    sys.exit(main())
