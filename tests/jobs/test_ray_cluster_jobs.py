"""Jobs on a real two-node Ray cluster through the Ray Jobs API: `ray start --head` (token
authentication on, dashboard on) plus a second node with other resources, both started by the
test on this machine in a temp dir and on ports of their own; `assay jobs submit --address`
runs a spec there, it registers its dataset, and `jobs logs/list/cancel/retry` go through
the same API."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import yaml

from datagen.jobs.store import JobState, JobStore, store_path
from datasets_registry import Registry

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def node_ports() -> list[str]:
    """Ports a node would otherwise take at fixed defaults (two nodes on one machine collide)."""
    return [
        f"--dashboard-agent-listen-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
    ]


@dataclass
class Cluster:
    jobs_api: str  # http://127.0.0.1:PORT, the dashboard's Jobs API
    env: dict[str, str]  # what a client on this machine runs with (the head's HOME: its token)


def _ray(args: list[str], env: dict[str, str]) -> None:
    done = subprocess.run([str(BIN / "ray"), *args], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]


def _stop(temp: Path) -> None:
    """Stop this cluster's processes only: those naming its temp dir and their descendants.
    (`ray stop` would stop every Ray on the machine, the in-process `ray_local` of other tests
    and other sessions' included.)"""
    roots = [p for p in psutil.process_iter(["cmdline"]) if str(temp) in " ".join(p.info["cmdline"] or [])]
    victims: dict[int, psutil.Process] = {}
    for root in roots:
        try:
            for process in [root, *root.children(recursive=True)]:
                victims[process.pid] = process
        except psutil.NoSuchProcess:
            pass
    for process in victims.values():
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(list(victims.values()), timeout=10)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=10)


@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[Cluster]:
    """A head (1 CPU, dashboard on, token authentication on) and a worker node (1 CPU and a
    `worker_node` resource), stopped in the end whatever happens."""
    home = tmp_path / "home"
    home.mkdir()
    # Ray's socket paths must stay under 107 bytes: a short folder of its own in /tmp.
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH", "RAY_ADDRESS"))}
    # As when `ray start` runs in the project's activated venv: the entrypoint's `python` is it.
    env |= {"HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0", "PATH": f"{BIN}:{env.get('PATH', '')}"}
    gcs, dashboard = free_port(), free_port()
    try:
        _ray(["get-auth-token", "--generate"], env)  # with a token, the head turns token auth on
        _ray(
            [
                "start",
                "--head",
                f"--port={gcs}",
                "--num-cpus=1",
                "--include-dashboard=true",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={dashboard}",
                f"--ray-client-server-port={free_port()}",
                f"--temp-dir={temp}",
                "--disable-usage-stats",
                *node_ports(),
            ],
            env,
        )
        # Ray's own node join does not turn token mode on by itself (assay's clients do)
        _ray(
            [
                "start",
                f"--address=127.0.0.1:{gcs}",
                "--num-cpus=1",
                '--resources={"worker_node": 1}',
                "--disable-usage-stats",
                *node_ports(),
            ],
            env | {"RAY_AUTH_MODE": "token"},
        )
        yield Cluster(f"http://127.0.0.1:{dashboard}", env)
    finally:
        _stop(temp)
        shutil.rmtree(temp, ignore_errors=True)
        left = [
            p.pid for p in psutil.process_iter(["cmdline"]) if str(temp) in " ".join(p.info["cmdline"] or [])
        ]
        assert not left, f"Ray processes of the test cluster still running: {left}"


def render_spec(folder: Path, rows: int, output: str = "cluster-out") -> Path:
    """A render-only pipeline whose source and template sit next to the spec (outside the
    project, so they travel as a py_modules entry of the runtime environment)."""
    (folder / "rows.jsonl").write_text("".join(f'{{"id": "r{i}", "prompt": "p{i}"}}\n' for i in range(rows)))
    (folder / "t.j2").write_text("Q: {{ prompt }}")
    spec = {
        "name": "on-cluster",
        "source": {"path": "rows.jsonl"},
        "stages": [{"type": "render", "template": "t.j2"}],
        "outputs": [{"dataset": output, "kind": "generic"}],
    }
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def assay(cluster: Cluster, registry: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "assay"), "--registry", str(registry), "jobs", *args],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def wait_final(cluster: Cluster, registry: Path, job_id: str, timeout_s: float = 180) -> JobState:
    """Poll through `assay jobs list`, which brings cluster jobs up to date with Ray's view."""
    store = JobStore(store_path(str(registry)))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assay(cluster, registry, "list")
        state = store.get(job_id).state
        if state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED):
            return state
        time.sleep(1.0)
    logs = assay(cluster, registry, "logs", job_id)
    raise AssertionError(
        f"job {job_id} still {store.get(job_id).state} after {timeout_s} s: {logs.stdout[-3000:]}"
        f"{logs.stderr[-3000:]}"
    )


@pytest.mark.slow  # a two-node cluster with its dashboard, and a job's runtime environment: ~60 s
def test_a_spec_submitted_to_a_two_node_cluster_runs_registers_and_logs(
    two_nodes: Cluster, tmp_path: Path
) -> None:
    spec_dir = tmp_path / "spec"
    spec_dir.mkdir()
    spec = render_spec(spec_dir, rows=5)
    registry = tmp_path / "registry"

    submitted = assay(two_nodes, registry, "submit", str(spec), "--address", two_nodes.jobs_api)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr[-3000:]
    store = JobStore(store_path(str(registry)))
    (job,) = store.list()
    assert job.ray_submission_id == f"{job.id}-1" and job.address == two_nodes.jobs_api
    assert job.ray_submission_id in submitted.stdout

    assert wait_final(two_nodes, registry, job.id) == JobState.SUCCEEDED, store.get(job.id).error
    job = store.get(job.id)
    assert job.accounting["rows_in"] == 5 and job.progress["rows_done"] == 5
    version = Registry(registry).open("cluster-out")
    assert version.num_rows == 5 and job.outputs == [version.ref]

    logs = assay(two_nodes, registry, "logs", job.id)
    assert logs.returncode == 0 and f"job {job.id}: 5 rows in, 5 finished" in logs.stdout
    listed = assay(two_nodes, registry, "list")
    assert job.id in listed.stdout and "succeeded" in listed.stdout
    shown = assay(two_nodes, registry, "show", job.id)
    assert job.ray_submission_id in shown.stdout
    token = (Path(two_nodes.env["HOME"]) / ".ray" / "auth_token").read_text().strip()
    for text in (submitted.stdout, logs.stdout, shown.stdout, job.spec_text, str(job.accounting)):
        assert token not in text  # the token never reaches the store or a log

    # retry on the cluster: the same job id, a new Ray submission (Ray never reuses an id)
    store.update(job.id, state=str(JobState.FAILED))
    again = assay(two_nodes, registry, "retry", job.id)
    assert again.returncode == 0, again.stderr[-3000:]
    assert store.get(job.id).ray_submission_id == f"{job.id}-2"
    assert wait_final(two_nodes, registry, job.id) == JobState.SUCCEEDED
    assert store.get(job.id).attempts == 2

    # cancel through Ray's stop_job, while the job's runtime environment is still being set up
    other = tmp_path / "other"
    other.mkdir()
    submitted = assay(
        two_nodes,
        registry,
        "submit",
        str(render_spec(other, 2000, "stopped-out")),
        "--address",
        two_nodes.jobs_api,
    )
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    stopped = store.list()[0]
    cancelled = assay(two_nodes, registry, "cancel", stopped.id)
    assert cancelled.returncode == 0, cancelled.stderr[-3000:]
    assert store.get(stopped.id).state == JobState.CANCELLED, cancelled.stdout
    assert "stopped-out" not in Registry(registry).names()  # no half-written version is visible


def test_an_unreachable_cluster_is_refused_in_one_line_and_the_job_recorded_failed(tmp_path: Path) -> None:
    spec = render_spec(tmp_path, rows=1)
    registry = tmp_path / "registry"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH", "RAY_ADDRESS"))}
    done = subprocess.run(
        [str(BIN / "assay"), "--registry", str(registry), "jobs", "submit", str(spec), "--address",
         "http://127.0.0.1:1"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert lines[-1].startswith("error: Ray Jobs API at http://127.0.0.1:1")
    (job,) = JobStore(store_path(str(registry))).list()
    assert job.state == JobState.FAILED and "http://127.0.0.1:1" in (job.error or "")


def test_the_runtime_env_ships_the_spec_folder_and_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datagen.jobs.ray_submit import PROJECT_ROOT, find_shipped_dir, runtime_env, ship_spec

    monkeypatch.setenv("RAY_AUTH_TOKEN", "s3cret-token-value")
    (tmp_path / "outside").mkdir()
    spec = render_spec(tmp_path / "outside", rows=1)
    staging = tmp_path / "staging"
    staging.mkdir()
    py_modules, spec_dir = ship_spec(spec, staging)
    (shipped,) = py_modules
    assert sorted(p.name for p in Path(shipped).iterdir()) == ["rows.jsonl", "spec.yaml", "t.j2"]
    monkeypatch.syspath_prepend(str(staging))  # where Ray puts a py_modules entry's parent
    assert find_shipped_dir(spec_dir) == Path(shipped).resolve()
    env = runtime_env(py_modules)
    assert (
        env["working_dir"] == str(PROJECT_ROOT) and ".venv" in env["excludes"] and ".git" in env["excludes"]
    )
    assert "s3cret-token-value" not in repr(env) and not any("AUTH" in k for k in env["env_vars"])
    inside = PROJECT_ROOT / "examples"
    example = next(inside.rglob("*.yaml"))
    assert ship_spec(example, staging) == ([], str(example.parent.relative_to(PROJECT_ROOT)))
