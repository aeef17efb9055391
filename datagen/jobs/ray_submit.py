"""Jobs on a Ray cluster through the Ray Jobs API (`ray.job_submission.JobSubmissionClient`).

`assay jobs submit SPEC --address http://HEAD:8265` (or `ray://HEAD:10001`) stores the job like
any other, marks it running (no local worker may claim it) and submits an entrypoint that runs
the same runner a local worker starts (`python -m datagen.jobs.runner`), so the job store
records its progress, accounting, outputs and end. The runtime environment carries the project
(`working_dir`, without .venv, .git and build outputs) and the spec's folder (its templates and
source file): inside the project it travels with the project, elsewhere as a `py_modules` entry
of its own. The registry root, and so the job store under it, must be a path every node sees
(on one machine any local path; on a cluster a shared disk).

Authentication: when a Ray token is at hand, token mode is turned on (`ray_jobs.enable_token_auth`)
and Ray's client sends it as a request header. The token never enters the runtime environment,
the entrypoint, the job store or a log.
"""

from __future__ import annotations

import asyncio
import hashlib
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assay.errors import AssayError
from datagen.jobs.ray_jobs import enable_token_auth, explain_connect_error
from datagen.jobs.store import FINAL_STATES, JobRecord, JobState, JobStore

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Never shipped: the virtual environment, git, caches, build outputs, a registry kept in the tree.
EXCLUDES = [".venv", ".git", "benchmarks/out", "__pycache__", "*.egg-info", ".assay", ".pytest_cache",
            ".ruff_cache", "build"]  # fmt: skip
SPEC_MODULE_PREFIX = "assay_spec_"
STOP_WAIT_S = 30.0


def _explain(address: str, err: BaseException) -> AssayError:
    """One line for a failure talking to the Jobs API at `address`."""
    explained = explain_connect_error(address, err)
    if explained is not None:
        return explained
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return AssayError(f"Ray Jobs API at {address}: {lines[0] if lines else type(err).__name__}")


def cluster_client(address: str) -> JobSubmissionClient:
    """A Jobs API client for `address` (`http://HEAD:8265` or `ray://HEAD:10001`), with the
    cluster's token authentication when a token is at hand.

    Raises:
        AssayError: the API cannot be reached (one line), or needs a token that is not here.
    """
    enable_token_auth()  # before the client is built: it reads the mode to add its auth header
    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError as err:  # ray without the [default] extra
        raise AssayError("submitting to a Ray cluster needs `pip install 'ray[default]'`") from err
    try:
        return JobSubmissionClient(address)
    except Exception as err:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError
        raise _explain(address, err) from err


def ship_spec(spec_path: Path, staging: Path) -> tuple[list[str], str]:
    """How the spec's folder travels: (py_modules entries, the runner's `--spec-dir`).

    Inside the project the folder is already in the working_dir (its path relative to it);
    elsewhere a copy named after the folder's path goes as a `py_modules` entry.
    """
    folder = spec_path.resolve().parent
    if folder.is_relative_to(PROJECT_ROOT):
        return [], str(folder.relative_to(PROJECT_ROOT))
    name = SPEC_MODULE_PREFIX + hashlib.sha256(str(folder).encode()).hexdigest()[:10]
    shutil.copytree(folder, staging / name, ignore=shutil.ignore_patterns(*EXCLUDES), symlinks=False)
    return [str(staging / name)], name


def find_shipped_dir(spec_dir: str) -> Path:
    """The spec's folder on the node: under the working directory, or a `py_modules` entry
    (Ray puts its parent on sys.path).

    Raises:
        AssayError: neither holds it.
    """
    here = Path(spec_dir)
    if here.is_dir():
        return here.resolve()
    for entry in sys.path:
        candidate = Path(entry or ".") / spec_dir
        if candidate.is_dir():
            return candidate.resolve()
    raise AssayError(f"the spec folder {spec_dir!r} did not reach this node (runtime env py_modules)")


def runtime_env(py_modules: list[str]) -> dict[str, Any]:
    """The job's runtime environment: the project, the spec's folder, quiet logs. No secrets."""
    env: dict[str, Any] = {
        "working_dir": str(PROJECT_ROOT),
        "excludes": list(EXCLUDES),
        "env_vars": {"LANCE_LOG": "error", "RAY_USAGE_STATS_ENABLED": "0"},
    }
    if py_modules:
        env["py_modules"] = py_modules
    return env


def submit_to_cluster(store: JobStore, job: JobRecord, address: str, registry_root: str) -> JobRecord:
    """Run a stored job on the cluster at `address` as a new Ray job; returns the updated record.

    The submission id is `JOB-ATTEMPT`: Ray never reuses an id, so a retried job gets a new
    submission under the same assay job id. The job is recorded running before the submission
    (the runner may finish before `submit_job` returns) and failed if the submission fails.

    Raises:
        AssayError: the cluster could not be reached or refused the job.
    """
    if "://" not in registry_root:
        registry_root = str(Path(registry_root).resolve())
    try:
        client = cluster_client(address)
    except AssayError as err:  # the job was stored running: record why it never started
        store.finish(job.id, JobState.FAILED, str(err))
        raise
    submission_id = f"{job.id}-{job.attempts + 1}"
    with tempfile.TemporaryDirectory(prefix="assay-ship-") as staging:
        py_modules, spec_dir = ship_spec(Path(job.spec_path), Path(staging))
        entrypoint = shlex.join([
            "python", "-m", "datagen.jobs.runner", job.id, "--store", str(store.path.resolve()),
            "--registry", registry_root, "--address", "auto", "--spec-dir", spec_dir,
        ])  # fmt: skip
        record = store.start_on_cluster(job.id, address=address, submission_id=submission_id)
        try:
            client.submit_job(
                entrypoint=entrypoint,
                submission_id=submission_id,
                runtime_env=runtime_env(py_modules),
                metadata={"assay_job": job.id},
            )
        except Exception as err:  # noqa: BLE001 - recorded, then one line for the user
            explained = _explain(address, err)
            store.finish(job.id, JobState.FAILED, str(explained))
            raise explained from err
    return record


def refresh(store: JobStore, job: JobRecord, client: JobSubmissionClient | None = None) -> JobRecord:
    """A cluster job's record, brought up to date with Ray's view: a Ray job that ended without
    its runner recording the end (stopped, entrypoint killed, runtime env failed) is recorded."""
    if job.ray_submission_id is None or job.address is None or job.state in FINAL_STATES:
        return job
    try:
        client = client or cluster_client(job.address)
        info = client.get_job_info(job.ray_submission_id)
    except AssayError:
        return job  # the cluster is unreachable now: show what the store has
    except Exception:  # noqa: BLE001 - e.g. the cluster restarted and forgot the job
        return job
    status = str(getattr(info.status, "value", info.status))
    if status not in ("SUCCEEDED", "FAILED", "STOPPED"):
        return job
    current = store.get(job.id)  # the runner may have recorded the end meanwhile
    if current.state in FINAL_STATES:
        return current
    if status == "STOPPED":
        return store.finish(job.id, JobState.CANCELLED, f"Ray job {job.ray_submission_id} was stopped")
    message = (info.message or "").strip().splitlines()
    why = message[-1] if message else f"Ray job {job.ray_submission_id} ended {status.lower()}"
    return store.finish(job.id, JobState.FAILED, f"on the cluster: {why}")


def print_logs(job: JobRecord, write: Callable[[str], None], *, follow: bool) -> None:
    """Write a cluster job's log (the entrypoint's output, as Ray keeps it); `follow` streams it
    until the Ray job ends."""
    assert job.address is not None and job.ray_submission_id is not None
    client = cluster_client(job.address)
    if not follow:
        write(client.get_job_logs(job.ray_submission_id))
        return

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job.ray_submission_id):
            write(chunk)

    asyncio.run(tail())


def cancel_on_cluster(store: JobStore, job: JobRecord) -> JobRecord:
    """Stop a running cluster job through Ray (`stop_job`: its entrypoint and the tasks and
    actors its driver owns) and record it cancelled once Ray reports it stopped."""
    assert job.address is not None and job.ray_submission_id is not None
    job = store.cancel(job.id)
    client = cluster_client(job.address)
    client.stop_job(job.ray_submission_id)
    deadline = time.monotonic() + STOP_WAIT_S
    while time.monotonic() < deadline:
        job = refresh(store, store.get(job.id), client)
        if job.state in FINAL_STATES:
            return job
        time.sleep(0.5)
    return job
