"""What per-test verdicts cost: HumanEval's 164 canonical programs through the same warm sandbox,
three ways in one run.

1. bare: prompt + canonical_solution + test + `check(entry_point)` as one `python3` script, a
   pass being exit code 0 (one verdict per program, no protection against reward hacks): the
   baseline;
2. the previous harness (`--old-commit`, loaded from git): tests and program in one process,
   nonce-tagged per-assert records, audit hook, strict comparisons; judged by today's host code
   (the records are the same);
3. `sandbox.verify`: today's harness, the tests in a judge process under another uid and the
   program in its own process, values crossing a data-only channel.

The three take turns for `--rounds` rounds (3), each keeping its best, so a burst of other load
hits them alike. All three must pass all 164. Prints programs/s, the ratios and the seconds, and
writes benchmarks/out/verify_humaneval.json (benchmarks/results/ with --record). Run it alone on
the machine:

    .venv/bin/python benchmarks/verify_humaneval.py [--record]
"""

import argparse
import gzip
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from results_io import add_output_args, write_result  # noqa: E402

from sandbox.config import SandboxConfig  # noqa: E402
from sandbox.docker_backend import DockerSandbox, docker_client  # noqa: E402
from sandbox.execution import ExecRequest, Limits, Step  # noqa: E402
from sandbox.harness.python_harness import discover  # noqa: E402
from sandbox.languages import get_runner  # noqa: E402
from sandbox.languages.base import Plan, judge, new_nonce  # noqa: E402
from sandbox.verdict import Verdict  # noqa: E402
from sandbox.verify import Job, verify_many  # noqa: E402

HUMANEVAL = ROOT.parent / "shared" / "data" / "humaneval" / "HumanEval.jsonl.gz"
LIMITS = Limits(wall_timeout_s=10, memory_mb=512, max_processes=64)
OLD_COMMIT = "f6cc710"  # the last commit whose harness ran the tests in the program's process


def old_harness(commit: str) -> bytes:
    """The Python harness as it was at `commit`."""
    return subprocess.run(
        ["git", "show", f"{commit}:sandbox/harness/python_harness.py"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout


def old_plan(harness: bytes, job: Job) -> Plan:
    """What `verify` planned with the harness of that commit: the tests discovered on the host,
    then program and tests in one process, the tests and the nonce on stdin."""
    names = tuple(t["name"] for t in discover(job.tests))
    nonce = new_nonce()
    payload = json.dumps({"nonce": nonce, "code": job.program, "tests": job.tests, "strict": True})
    step = Step("run", ("python3", "-I", "-S", "-B", "harness.py"), stdin=payload.encode())
    return Plan(ExecRequest(files=(("harness.py", harness),), steps=(step,), limits=LIMITS), names, nonce)


def main() -> None:
    """Measure the three ways and write the result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="programs in flight (and warm containers)")
    parser.add_argument("--old-commit", default=OLD_COMMIT, help="where the previous harness lives")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three ways; the best counts")
    add_output_args(parser, "verify_humaneval")
    args = parser.parse_args()
    with gzip.open(HUMANEVAL, "rt") as lines:
        rows = [json.loads(line) for line in lines]
    runner = get_runner("python")
    jobs = [
        Job(
            "python",
            r["prompt"] + r["canonical_solution"],
            f"{r['test']}\ncheck({r['entry_point']})\n",
            False,
        )
        for r in rows
    ]
    scripts = [
        f"{r['prompt']}{r['canonical_solution']}\n{r['test']}\ncheck({r['entry_point']})\n".encode()
        for r in rows
    ]
    requests = [
        ExecRequest(files=(("main.py", s),), steps=(Step("run", ("python3", "main.py")),), limits=LIMITS)
        for s in scripts
    ]
    harness = old_harness(args.old_commit)

    def old_verify(job: Job) -> Verdict:
        plan = old_plan(harness, job)
        return judge(runner, plan, sandbox.execute(plan.request))

    sandbox = DockerSandbox(SandboxConfig(backend="docker", pool_size=args.workers), docker_client())
    seconds: dict[str, list[float]] = {"bare": [], "old": [], "verify": []}
    try:
        with ThreadPoolExecutor(args.workers) as pool:  # warm-up: every container has run once
            list(pool.map(sandbox.execute, requests[: 2 * args.workers]))

            def timed(name: str, work) -> list:  # noqa: ANN001
                started = time.monotonic()
                done = work()
                seconds[name].append(time.monotonic() - started)
                return done

            # The three ways take turns, round after round, so a burst of other load on the
            # machine hits them alike; each keeps its best round.
            for _ in range(args.rounds):
                bare = timed("bare", lambda: list(pool.map(sandbox.execute, requests)))
                old = timed("old", lambda: list(pool.map(old_verify, jobs)))
                verdicts = timed(
                    "verify", lambda: verify_many(sandbox, jobs, workers=args.workers, limits=LIMITS)
                )
    finally:
        sandbox.close()
    bare_s, old_s, verify_s = (min(seconds[name]) for name in ("bare", "old", "verify"))
    bare_passed = sum(result.ok for result in bare)
    old_passed = sum(v.status == "passed" for v in old)
    verify_passed = sum(v.status == "passed" for v in verdicts)
    assert bare_passed == old_passed == verify_passed == len(rows), (bare_passed, old_passed, verify_passed)
    n = len(rows)
    result = {
        "benchmark": "verify_humaneval",
        "programs": n,
        "workers": args.workers,
        "bare_programs_per_s": round(n / bare_s, 1),
        "bare_total_s": round(bare_s, 2),
        "old_harness": args.old_commit,
        "old_programs_per_s": round(n / old_s, 1),
        "old_total_s": round(old_s, 2),
        "verify_programs_per_s": round(n / verify_s, 1),
        "verify_total_s": round(verify_s, 2),
        "verify_over_bare": round(bare_s / verify_s, 3),
        "verify_over_old": round(old_s / verify_s, 3),
        "asserts_judged": sum(v.total for v in verdicts),
        "rounds": args.rounds,
        "seconds_per_round": {name: [round(x, 2) for x in values] for name, values in seconds.items()},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}",
    }
    print(f"bare run, exit code only:            {n / bare_s:6.1f} programs/s ({bare_s:.1f} s for {n})")
    print(f"old harness ({args.old_commit}), one process:  {n / old_s:6.1f} programs/s ({old_s:.1f} s)")
    print(f"verify, judge and program apart:     {n / verify_s:6.1f} programs/s ({verify_s:.1f} s)")
    print(
        f"ratio verify / bare: {result['verify_over_bare']:.2f}; verify / old harness: "
        f"{result['verify_over_old']:.2f}; {result['asserts_judged']} asserts judged"
    )
    write_result(args, result)


if __name__ == "__main__":
    main()
