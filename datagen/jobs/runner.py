"""Run one stored job: load its frozen spec, run the pipeline, record the outcome in the store.

A worker starts this module as a child process per job (`python -m datagen.jobs.runner`), so a
job that is killed takes nothing else with it, and a Ray Jobs entrypoint runs it the same way
on a cluster. Running a job again under its id (resume, retry) takes every completion finished
before from the LLM-call cache: only unfinished rows reach a model.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from assay.config import apply_overrides, describe_validation_error
from assay.errors import AssayError
from datagen.jobs.store import JobRecord, JobState, JobStore
from datagen.spec import LoadedSpec

HEARTBEAT_S = 5.0
# Test hook: the job process kills itself (SIGKILL) after registering this many datasets, so a
# test can check that a job's outputs land together or not at all.
KILL_AFTER_OUTPUTS_ENV = "ASSAY_JOBS_KILL_AFTER_OUTPUTS"


def load_frozen_spec(job: JobRecord, spec_dir: Path | None = None) -> LoadedSpec:
    """The job's spec as frozen at submit, with its overrides; relative paths in it resolve
    against the original spec file's folder, or `spec_dir` (its copy on a Ray cluster's node).

    Raises:
        AssayError: the frozen text no longer validates (e.g. a stage type since removed).
    """
    from datagen.recipes import expand_recipe
    from datagen.spec import pipeline_spec_model

    path = Path(job.spec_path) if spec_dir is None else spec_dir / Path(job.spec_path).name
    raw = yaml.safe_load(job.spec_text) or {}
    if not isinstance(raw, dict):
        raise AssayError(f"{path}: job {job.id}: the frozen spec is not a mapping")
    apply_overrides(raw, job.overrides)
    expanded = expand_recipe(raw, path)
    try:
        spec = pipeline_spec_model().model_validate(expanded)
    except ValidationError as err:
        raise AssayError(describe_validation_error(err, path)) from err
    return LoadedSpec(spec=spec, path=path, raw=raw)


class _Heartbeat(threading.Thread):
    """Updates the job's heartbeat, so a scheduler can tell a live job from a lost one."""

    def __init__(self, store: JobStore, job_id: str) -> None:
        super().__init__(daemon=True)
        self.store, self.job_id, self.stop = store, job_id, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(HEARTBEAT_S):
            self.store.update(self.job_id, heartbeat_at=time.time())


def run_stored_job(
    store: JobStore,
    job_id: str,
    registry_root: str,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    spec_dir: Path | None = None,
) -> JobState:
    """Run a claimed job to its end and record it (`run_recorded`); returns the final state."""
    from assay.settings import model_store_dir
    from datagen.job import prepare_job, run_job
    from datasets_registry import Registry
    from model_store import ModelStore

    job = store.get(job_id)
    kill_after = int(os.environ.get(KILL_AFTER_OUTPUTS_ENV, "0") or 0)
    registered: list[str] = []

    def on_registered(ref: str) -> None:
        registered.append(ref)
        store.update(job_id, outputs=registered)
        if kill_after and len(registered) >= kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    def run() -> None:
        registry = Registry(registry_root)
        loaded = load_frozen_spec(job, spec_dir)
        extra_sources: list[str] = []
        if job.kind == "retry":
            from datagen.jobs.retry import retry_spec

            assert job.parent is not None
            retries = store.path.parent / "retries" / job.id
            loaded, extra_sources = retry_spec(loaded, registry, job.parent, retries)
        prepared = prepare_job(loaded, registry, ModelStore(model_store_dir()))
        prepared.extra_sources = extra_sources
        prepared.job_id = job.id  # the job's id, in lineage, dead letters and the commit record
        _start_ray(
            address or loaded.spec.ray.address, loaded.spec.ray.num_cpus or num_cpus or math.ceil(job.cpus)
        )
        store.update(job_id, progress={"phase": "running", "rows_total": _source_rows(prepared.source)})
        report = run_job(prepared, registry, address=address, log=lambda m: print(m, flush=True),
                         on_registered=on_registered)  # fmt: skip
        done = report.rows_in - report.rows_failed
        store.update(
            job_id,
            progress={"phase": "done", "rows_total": report.rows_in, "rows_done": done},
            accounting=_accounting(report),
            outputs=[o.ref for o in report.outputs]
            + ([report.dead_letter.ref] if report.dead_letter else []),
        )
        print(f"job {job_id}: {report.rows_in} rows in, {done} finished, {report.rows_failed} failed "
              f"in {report.wall_s:.1f} s", flush=True)  # fmt: skip

    return run_recorded(store, job_id, run, phase="preparing")


def run_recorded(
    store: JobStore, job_id: str, work: Callable[[], None], *, phase: str = "running"
) -> JobState:
    """Run a claimed job's `work` with a heartbeat and record how it ended; the final state.

    Every error is recorded in the job (its message, or the traceback's last line for a bug)
    and printed, so it is in the job's log.
    """
    store.update(job_id, pid=os.getpid(), heartbeat_at=time.time(), progress={"phase": phase})
    heartbeat = _Heartbeat(store, job_id)
    heartbeat.start()
    try:
        work()
        return store.finish(job_id, JobState.SUCCEEDED).state
    except AssayError as err:
        print(f"error: {err}", flush=True)
        return store.finish(job_id, JobState.FAILED, str(err)).state
    except Exception as err:  # noqa: BLE001 - a bug: recorded, and its traceback kept in the log
        import traceback

        traceback.print_exc()
        return store.finish(job_id, JobState.FAILED, f"{type(err).__name__}: {err}").state
    finally:
        heartbeat.stop.set()


def _source_rows(source: Any) -> int | None:
    """How many rows the job's source holds (None when unknown before reading)."""
    if source.table is not None:
        return source.table.num_rows
    if source.version is not None:
        total = source.version.num_rows
        return min(total, source.limit) if source.limit else total
    return None


def _start_ray(address: str | None, num_cpus: int) -> None:
    from datagen.job import start_ray

    start_ray(address, num_cpus)


def _accounting(report: Any) -> dict[str, Any]:
    """Tokens, time and cache hits of a job, summed over its generate stages, and the rows its
    other stages took from the stage-result cache."""
    totals = {
        "completions": 0,
        "cache_hits": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "generate_s": 0.0,
    }
    for models in report.usage.values():
        for usage in models.values():
            for key in totals:
                totals[key] += usage.get(key, 0)
    # Rows the non-LLM stages (execute, score, ...) took from the stage-result cache.
    totals["stage_cache_hits"] = sum(
        m.get("stage_cache", {}).get("hits", 0) for m in getattr(report, "stage_metrics", {}).values()
    )
    return totals | {"rows_in": report.rows_in, "rows_failed": report.rows_failed,
                     "wall_s": round(report.wall_s, 2), "usage": report.usage}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Entry point of a job's process: `python -m datagen.jobs.runner --store DB --registry ROOT ID`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("job_id")
    parser.add_argument("--store", required=True)
    parser.add_argument("--registry", required=True)
    parser.add_argument("--address", default=None)
    parser.add_argument(
        "--spec-dir",
        default=None,
        help="The spec's folder as shipped to a Ray cluster (datagen.jobs.ray_submit).",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("LANCE_LOG", "error")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    spec_dir = None
    if args.spec_dir:
        from datagen.jobs.ray_submit import find_shipped_dir

        spec_dir = find_shipped_dir(args.spec_dir)
    state = run_stored_job(JobStore(args.store), args.job_id, args.registry, address=args.address,
                           spec_dir=spec_dir)  # fmt: skip
    return 0 if state == JobState.SUCCEEDED else 1


if __name__ == "__main__":
    sys.exit(main())
