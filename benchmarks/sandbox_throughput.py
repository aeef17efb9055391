"""Sandbox throughput on HumanEval's 164 canonical programs with 2 workers, four ways in one run.

1. a fresh `docker run` per program (same image, same limits): the baseline;
2. `docker exec` into warm containers;
3. the assay sandbox: warm containers, each with the fork server (no exec per program); and
   `sandbox.verify` through the same pool (per-test verdicts: the tests in a judge process, the
   program apart), for the cost of per-test verdicts next to exit codes;
4. plain `python3` subprocesses on the host, no isolation at all: the ceiling.

Each program is prompt + canonical_solution + test + `check(entry_point)`; every verdict must be
a pass. Prints programs/s and ratios and writes a JSON result. Run it alone on the machine:

    .venv/bin/python benchmarks/sandbox_throughput.py
"""

import argparse
import gzip
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from results_io import add_output_args, write_result  # noqa: E402

from sandbox.config import SandboxConfig  # noqa: E402
from sandbox.docker_backend import DockerSandbox  # noqa: E402
from sandbox.execution import ExecRequest, Limits, Step  # noqa: E402
from sandbox.verify import Job, verify  # noqa: E402

HUMANEVAL = ROOT.parent / "shared" / "data" / "humaneval" / "HumanEval.jsonl.gz"
LIMITS = Limits(wall_timeout_s=10, memory_mb=512, max_processes=64)
UID = 20099  # a sandbox user of the image, for the docker run / exec baselines


def load_programs(path: Path) -> list[str]:
    with gzip.open(path, "rt") as f:
        tasks = [json.loads(line) for line in f]
    return [
        f"{t['prompt']}{t['canonical_solution']}\n\n{t['test']}\n\ncheck({t['entry_point']})\n" for t in tasks
    ]


def load_jobs(path: Path) -> list[Job]:
    """The same programs as `verify` jobs: prompt + canonical_solution against test + check."""
    with gzip.open(path, "rt") as f:
        tasks = [json.loads(line) for line in f]
    return [
        Job(
            "python",
            t["prompt"] + t["canonical_solution"],
            f"{t['test']}\ncheck({t['entry_point']})\n",
            False,
        )
        for t in tasks
    ]


def docker_limits(image: str) -> list[str]:
    """The flags that give a plain container the same isolation as a sandbox container."""
    return [
        "--network", "none", "--read-only", "--user", f"{UID}:{UID}", "--workdir", "/work",
        "--tmpfs", f"/work:size=256m,uid={UID},gid={UID},mode=0700,exec", "--tmpfs", "/tmp:size=64m",
        "--memory", "576m", "--memory-swap", "576m", "--pids-limit", "80", "--cpus", "1",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--label", "assay.benchmark=1",
    ]  # fmt: skip


def measure(name: str, programs: list[str], run_one: Callable[[str], bool], workers: int) -> dict:
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        verdicts = list(pool.map(run_one, programs))
    seconds = time.perf_counter() - started
    passed = sum(verdicts)
    rate = len(programs) / seconds
    print(f"{name:<26} {rate:7.1f} programs/s  {seconds:6.2f} s  passed {passed}/{len(programs)}", flush=True)
    return {"seconds": seconds, "programs_per_s": rate, "passed": passed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data", type=Path, default=HUMANEVAL)
    add_output_args(parser, "sandbox_throughput")
    parser.add_argument(
        "--skip-docker-run", action="store_true", help="Skip the slow fresh-container baseline."
    )
    args = parser.parse_args()
    if not args.data.exists():
        sys.exit(f"HumanEval data not found at {args.data}")
    programs = load_programs(args.data)
    config = SandboxConfig(backend="docker", pool_size=args.workers)
    image = config.resolved_image()
    results: dict[str, dict] = {}

    # The system interpreter, not a version-manager shim (a shell script that costs ~50 ms a call).
    host_python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable

    def plain(program: str) -> bool:
        done = subprocess.run([host_python, "-"], input=program.encode(), capture_output=True, timeout=10)
        return done.returncode == 0

    results["plain_subprocess"] = measure("plain subprocess (ceiling)", programs, plain, args.workers)

    started = time.perf_counter()
    sandbox = DockerSandbox(config)
    pool_start_s = time.perf_counter() - started

    def assay(program: str) -> bool:
        request = ExecRequest(
            files=(("main.py", program.encode()),),
            steps=(Step("run", ("python3", "main.py")),),
            limits=LIMITS,
        )
        return sandbox.execute(request).ok

    def verified(job: Job) -> bool:
        return (
            verify(sandbox, job.language, job.program, job.tests, extract=False, limits=LIMITS).status
            == "passed"
        )

    try:
        assay(programs[0])  # warm-up
        results["assay_fork_server"] = measure("assay sandbox (fork server)", programs, assay, args.workers)
        jobs = load_jobs(args.data)
        results["assay_verify"] = measure("assay verify (per test)", jobs, verified, args.workers)
    finally:
        sandbox.close()
    results["assay_fork_server"]["pool_start_s"] = pool_start_s

    names = [f"assay-bench-{uuid.uuid4().hex[:8]}" for _ in range(args.workers)]
    for name in names:
        subprocess.run(
            ["docker", "run", "-d", "--name", name, *docker_limits(image), image, "sleep", "infinity"],
            check=True,
            capture_output=True,
        )
    slots: list[str] = list(names)

    def docker_exec(program: str) -> bool:
        name = slots.pop()
        try:
            command = ["docker", "exec", "-i", name, "python3", "-"]
            return (
                subprocess.run(command, input=program.encode(), capture_output=True, timeout=60).returncode
                == 0
            )
        finally:
            slots.append(name)

    try:
        results["docker_exec"] = measure("docker exec (warm)", programs, docker_exec, args.workers)
    finally:
        subprocess.run(["docker", "rm", "-f", *names], capture_output=True)

    if not args.skip_docker_run:

        def docker_run(program: str) -> bool:
            command = ["docker", "run", "--rm", "-i", *docker_limits(image), image, "python3", "-"]
            return (
                subprocess.run(command, input=program.encode(), capture_output=True, timeout=120).returncode
                == 0
            )

        results["docker_run"] = measure("fresh docker run", programs, docker_run, args.workers)

    ours = results["assay_fork_server"]["programs_per_s"]
    ratios = {
        f"assay_vs_{k}": ours / v["programs_per_s"]
        for k, v in results.items()
        if k not in ("assay_fork_server", "assay_verify")
    }
    if "docker_run" in results:
        ratios["verify_vs_docker_run"] = (
            results["assay_verify"]["programs_per_s"] / results["docker_run"]["programs_per_s"]
        )
    for key, ratio in ratios.items():
        print(f"{key}: {ratio:.2f}x")
    all_passed = all(r["passed"] == len(programs) for r in results.values())
    print(f"all verdicts pass: {all_passed}")
    report = {
        "benchmark": "sandbox_throughput",
        "programs": len(programs),
        "workers": args.workers,
        "image": image,
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "results": results,
        "ratios": ratios,
        "all_passed": all_passed,
    }
    write_result(args, report)
    if not all_passed:
        sys.exit("some canonical programs did not pass")


if __name__ == "__main__":
    main()
