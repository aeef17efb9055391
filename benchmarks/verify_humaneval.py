"""What per-test verdicts cost: HumanEval's 164 canonical programs through the same warm sandbox,
two ways in one run.

1. bare: prompt + canonical_solution + test + `check(entry_point)` as one `python3` script, a
   pass being exit code 0 (one verdict per program, no protection against reward hacks): the
   baseline;
2. `sandbox.verify`: the Python harness (tests on stdin, nonce-tagged per-assert records, audit
   hook, strict comparisons).

Both must pass all 164. Prints programs/s, the ratio and the seconds for all 164, and writes
benchmarks/results/verify_humaneval.json. Run it alone on the machine:

    .venv/bin/python benchmarks/verify_humaneval.py
"""

import argparse
import gzip
import json
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sandbox.config import SandboxConfig  # noqa: E402
from sandbox.docker_backend import DockerSandbox, docker_client  # noqa: E402
from sandbox.execution import ExecRequest, Limits, Step  # noqa: E402
from sandbox.verify import Job, verify_many  # noqa: E402

HUMANEVAL = ROOT.parent / "shared" / "data" / "humaneval" / "HumanEval.jsonl.gz"
LIMITS = Limits(wall_timeout_s=10, memory_mb=512, max_processes=64)


def main() -> None:
    """Measure both ways and write the result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="programs in flight (and warm containers)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "verify_humaneval.json")
    args = parser.parse_args()
    with gzip.open(HUMANEVAL, "rt") as lines:
        rows = [json.loads(line) for line in lines]
    sandbox = DockerSandbox(SandboxConfig(backend="docker", pool_size=args.workers), docker_client())
    try:
        scripts = [
            f"{r['prompt']}{r['canonical_solution']}\n{r['test']}\ncheck({r['entry_point']})\n".encode()
            for r in rows
        ]
        requests = [
            ExecRequest(files=(("main.py", s),), steps=(Step("run", ("python3", "main.py")),), limits=LIMITS)
            for s in scripts
        ]
        jobs = [
            Job(
                "python",
                r["prompt"] + r["canonical_solution"],
                f"{r['test']}\ncheck({r['entry_point']})\n",
                False,
            )
            for r in rows
        ]
        with ThreadPoolExecutor(args.workers) as pool:  # warm-up: every container has run once
            list(pool.map(sandbox.execute, requests[: 2 * args.workers]))
            started = time.monotonic()
            bare = list(pool.map(sandbox.execute, requests))
            bare_s = time.monotonic() - started
        started = time.monotonic()
        verdicts = verify_many(sandbox, jobs, workers=args.workers, limits=LIMITS)
        verify_s = time.monotonic() - started
    finally:
        sandbox.close()
    bare_passed = sum(result.ok for result in bare)
    verify_passed = sum(v.status == "passed" for v in verdicts)
    assert bare_passed == verify_passed == len(rows), (bare_passed, verify_passed)
    result = {
        "benchmark": "verify_humaneval",
        "programs": len(rows),
        "workers": args.workers,
        "bare_programs_per_s": round(len(rows) / bare_s, 1),
        "bare_total_s": round(bare_s, 2),
        "verify_programs_per_s": round(len(rows) / verify_s, 1),
        "verify_total_s": round(verify_s, 2),
        "verify_over_bare": round(bare_s / verify_s, 3),
        "asserts_judged": sum(v.total for v in verdicts),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
    }
    bare_rate, verify_rate = result["bare_programs_per_s"], result["verify_programs_per_s"]
    print(f"bare run, exit code only:   {bare_rate:6.1f} programs/s ({bare_s:.1f} s for {len(rows)})")
    print(f"verify, per-assert verdict: {verify_rate:6.1f} programs/s ({verify_s:.1f} s for {len(rows)})")
    print(f"ratio verify / bare: {result['verify_over_bare']:.2f}; {result['asserts_judged']} asserts judged")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
