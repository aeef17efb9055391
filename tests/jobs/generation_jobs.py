"""Shared by the job tests that run real generation: a spec over N distinct prompts with the
tiny model, the LLM-call cache's size (calls finished so far), and process-tree helpers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import yaml
from execute_jobs import table_rows

from datagen.job import cache_uri
from datasets_registry import Registry

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT / "datagen" / "seeds" / "ifeval_multilingual.jsonl"
ASSAY = str(Path(sys.executable).parent / "assay")


def generate_spec(folder: Path, model: Path, rows: int, *, name: str = "resumable") -> Path:
    """A render + generate (n=2, seeded) spec over `rows` distinct prompts and ids.

    Distinct, because a repeated prompt is a cache hit within one run: a resume test counting
    cache hits must know that every hit comes from an earlier attempt. One prompt per batch,
    because the HF engine seeds a batch, not a row: a resumed run batches other rows together
    and would sample other completions.
    """
    seeds = [json.loads(line)["prompt"] for line in SEEDS.read_text().splitlines() if line.strip()]
    lines = [
        json.dumps({"id": f"row-{i:04d}", "prompt": f"{seeds[i % len(seeds)]} (#{i})"}) for i in range(rows)
    ]
    (folder / "rows.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "t.j2").write_text("{{ prompt }}")
    spec = {
        "name": name,
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
        "outputs": [{"dataset": f"{name}-out", "kind": "generic"}],
        "ray": {"num_cpus": 2},
    }
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def cached_calls(registry: Path) -> int:
    """Generate calls finished and stored in the registry's LLM-call cache so far."""
    return table_rows(cache_uri(Registry(registry)))


def start_worker(registry: Path, *extra: str) -> subprocess.Popen[str]:
    """`assay jobs worker --until-idle` on `registry`, its output captured."""
    env = {**os.environ, "ASSAY_REGISTRY": str(registry)}
    return subprocess.Popen([ASSAY, "jobs", "worker", "--until-idle", "--cpus", "2", "--poll", "0.2", *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip


def assay(registry: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run an `assay` command on `registry`."""
    env = {**os.environ, "ASSAY_REGISTRY": str(registry)}
    return subprocess.run([ASSAY, *args], env=env, capture_output=True, text=True, check=False)


def wait_until(
    condition: Callable[[], bool], timeout_s: float, what: str, process: subprocess.Popen[str] | None = None
) -> None:
    """Poll `condition()` until true; fail with `what` (and the process's output if it died)."""
    deadline = time.time() + timeout_s
    while not condition():
        if process is not None and process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise AssertionError(f"{what}: the process ended first:\n{output}")
        if time.time() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(0.05)


def descendants(pid: int) -> list[psutil.Process]:
    """Every process `pid` started, directly or not (Ray's raylet, GCS, workers and actors)."""
    return psutil.Process(pid).children(recursive=True)


def safe_cmdline(process: psutil.Process) -> list[str]:
    """A process's command line (Ray's processes show their role: `ray::DashboardAgent`), or
    [] once it is gone."""
    try:
        return process.cmdline()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return []


def still_running(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those of `processes` that still run (a zombie, dead but not yet reaped, does not)."""
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            pass
    return alive


def wait_gone(processes: list[psutil.Process], timeout_s: float) -> list[str]:
    """Wait for `processes` to end; returns the names of those still running after `timeout_s`
    (killed then, so a failing test leaves nothing behind)."""
    deadline = time.time() + timeout_s
    while still_running(processes) and time.time() < deadline:
        time.sleep(0.2)
    left = still_running(processes)
    names = []
    for process in left:
        try:
            names.append(f"{process.pid} {process.name()}")
            process.kill()
        except psutil.NoSuchProcess:
            pass
    return names
