"""Real benchmarks through the real sandbox: every HumanEval canonical solution and every
sanitized-MBPP reference solution passes its tests, and a broken variant of each (the tested
function's body replaced by `return None`) does not."""

import ast
import gzip
import json
import time
from pathlib import Path

import pytest
from timing import bound

from sandbox.execution import Limits
from sandbox.verify import Job, verify_many

pytestmark = pytest.mark.docker
# The slowest reference solution (MBPP's amicable numbers up to 9999) needs about 3 s of CPU: on a
# loaded 2-core machine (load average 20 to 70) it took 10 to 30 s of wall time, past the default
# 10 s. This test is about verdicts, not speed: a generous wall-clock limit, scaled like every bound.
LIMITS = Limits(wall_timeout_s=bound(60))


def humaneval_jobs(data: Path) -> tuple[list[Job], list[Job]]:
    with gzip.open(data / "humaneval" / "HumanEval.jsonl.gz", "rt") as lines:
        rows = [json.loads(line) for line in lines]
    assert len(rows) == 164
    tests = [f"{row['test']}\ncheck({row['entry_point']})\n" for row in rows]
    good = [
        Job("python", row["prompt"] + row["canonical_solution"], t, False)
        for row, t in zip(rows, tests, strict=True)
    ]
    broken = [
        Job("python", row["prompt"] + "    return None\n", t, False)
        for row, t in zip(rows, tests, strict=True)
    ]
    return good, broken


def return_none(code: str, names: set[str]) -> str:
    """`code` with the bodies of the functions called `names` replaced by `return None`."""
    tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name in names:
            node.body = [ast.Return(ast.Constant(None))]
    return ast.unparse(tree)


def mbpp_jobs(data: Path) -> tuple[list[Job], list[Job]]:
    rows = json.loads((data / "mbpp" / "sanitized-mbpp.json").read_text())
    assert len(rows) == 427
    good, broken = [], []
    for row in rows:
        tests = "\n".join(row["test_imports"] + row["test_list"]) + "\n"
        called = {
            node.func.id
            for line in row["test_list"]
            for node in ast.walk(ast.parse(line))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        }
        good.append(Job("python", row["code"], tests, False))
        broken.append(Job("python", return_none(row["code"], called), tests, False))
    return good, broken


@pytest.mark.parametrize("benchmark", ["humaneval", "mbpp"])
def test_reference_solutions_pass_and_broken_ones_fail(
    docker_sandbox, shared_data: Path, benchmark: str
) -> None:
    good, broken = (humaneval_jobs if benchmark == "humaneval" else mbpp_jobs)(shared_data)
    started = time.monotonic()
    verdicts = verify_many(docker_sandbox, good, workers=docker_sandbox.config.pool_size, limits=LIMITS)
    elapsed = time.monotonic() - started
    failures = [(i, v.status, v.message[:200], [t.message for t in v.tests if not t.passed][:2])
                for i, v in enumerate(verdicts) if v.status != "passed"]  # fmt: skip
    assert not failures, failures
    rate = len(good) / elapsed
    print(f"{benchmark}: {len(good)} reference solutions verified in {elapsed:.1f} s ({rate:.1f}/s)")
    broken_verdicts = verify_many(
        docker_sandbox, broken, workers=docker_sandbox.config.pool_size, limits=LIMITS
    )
    passing = [i for i, v in enumerate(broken_verdicts) if v.status == "passed" or v.reward == 1.0]
    assert not passing, f"broken variants that pass: {passing}"
    assert all(v.status in ("failed", "runtime_error", "timeout") for v in broken_verdicts)
