"""The `execute` stage inside a Ray pipeline against `verify_many`, same programs, same run.

Programs: MBPP's training split (task ids 601-974 of ../shared/data/mbpp/mbpp.jsonl), each
reference solution and a broken variant (its first `return` returns None), run against the
task's asserts. Both ways use one warm Docker sandbox of `--pool` containers and `--pool`
executions in flight:

1. `verify_many(sandbox, jobs, workers=pool)`: the baseline, no Ray (the sandbox is opened
   before the clock starts);
2. the `execute` stage (program mode) over a Ray Dataset of the same rows, one actor: the clock
   covers the whole plan, the actor's start and its sandbox's warm-up included, as a job pays it.

Prints programs/s of both and the ratio (issue 15 asks for >= 0.5), checks that both give the
same verdicts, and writes a JSON result. Run it alone, with nothing else heavy on the machine:

    .venv/bin/python benchmarks/code_execute_throughput.py --limit 120 --pool 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from results_io import add_output_args, write_result  # noqa: E402

MBPP = ROOT.parent / "shared" / "data" / "mbpp" / "mbpp.jsonl"
_RETURN = re.compile(r"^(\s*)return\b.*$", re.MULTILINE)


def load_rows(limit: int) -> list[dict]:
    """Reference and broken program per MBPP train task, with the task's asserts."""
    tasks = [json.loads(line) for line in MBPP.read_text().splitlines()]
    tasks = [t for t in tasks if 601 <= t["task_id"] <= 974][: max(1, limit // 2)]
    rows = []
    for task in tasks:
        code = task["code"].replace("\r\n", "\n")
        tests = (
            "\n".join(([task["test_setup_code"]] if task["test_setup_code"] else []) + task["test_list"])
            + "\n"
        )
        broken = _RETURN.sub(r"\1return None", code, count=1)
        rows.append({"id": f"{task['task_id']}-ref", "language": "python", "program": code, "tests": tests})
        rows.append(
            {"id": f"{task['task_id']}-broken", "language": "python", "program": broken, "tests": tests}
        )
    return rows[:limit]


def run_verify_many(rows: list[dict], pool: int) -> tuple[float, dict[str, str]]:
    from sandbox import open_sandbox
    from sandbox.config import SandboxConfig
    from sandbox.verify import Job, verify_many

    config = SandboxConfig(backend="docker", pool_size=pool)
    sandbox = open_sandbox(config)
    try:
        verify_many(
            sandbox, [Job("python", "x = 1\n", "assert x == 1\n", extract=False)] * pool, workers=pool
        )
        jobs = [Job(r["language"], r["program"], r["tests"], extract=False) for r in rows]
        started = time.perf_counter()
        verdicts = verify_many(sandbox, jobs, workers=pool, limits=config.limits.to_limits())
        wall = time.perf_counter() - started
    finally:
        sandbox.close()
    return wall, {r["id"]: v.status for r, v in zip(rows, verdicts, strict=True)}


def run_stage(rows: list[dict], pool: int) -> tuple[float, dict[str, str]]:
    import pyarrow as pa
    import ray
    import ray.data

    from datagen.sources import prepare_rows
    from datagen.stages.execute import ExecuteStage, ExecuteStageSpec

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        spec = ExecuteStageSpec(
            type="execute", name="execute", program="program", extract=False, actors=1, batch_size=16,
            max_concurrency=pool, sandbox={"backend": "docker", "pool_size": pool},
        )  # fmt: skip
        table = prepare_rows(pa.Table.from_pylist(rows))
        blocks = [table.slice(i, 16) for i in range(0, table.num_rows, 16)]
        started = time.perf_counter()
        out = (
            ExecuteStage(spec).apply(ray.data.from_arrow(blocks)).select_columns(["id", "verdict"]).take_all()
        )
        wall = time.perf_counter() - started
    finally:
        ray.shutdown()
    return wall, {r["id"]: r["verdict"] for r in out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=120, help="programs (half references, half broken)")
    parser.add_argument("--pool", type=int, default=2, help="warm containers and executions in flight")
    add_output_args(parser, "code_execute_throughput")
    args = parser.parse_args()
    if not MBPP.is_file():
        sys.exit(f"{MBPP} is absent: this benchmark needs ../shared/data")
    rows = load_rows(args.limit)
    baseline_s, baseline = run_verify_many(rows, args.pool)
    stage_s, staged = run_stage(rows, args.pool)
    if staged != baseline:
        differ = sorted(k for k in baseline if staged.get(k) != baseline[k])
        sys.exit(f"verdicts differ between the two ways for {len(differ)} programs, e.g. {differ[:5]}")
    n = len(rows)
    result = {
        "programs": n,
        "pool": args.pool,
        "passed": sum(v == "passed" for v in baseline.values()),
        "verify_many_s": round(baseline_s, 2),
        "verify_many_programs_per_s": round(n / baseline_s, 2),
        "execute_stage_s": round(stage_s, 2),
        "execute_stage_programs_per_s": round(n / stage_s, 2),
        "ratio_stage_to_verify_many": round(baseline_s / stage_s, 3),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    print(
        f"{n} programs ({result['passed']} pass), pool {args.pool}: "
        f"verify_many {result['verify_many_programs_per_s']}/s, "
        f"execute stage in Ray {result['execute_stage_programs_per_s']}/s, "
        f"ratio {result['ratio_stage_to_verify_many']}"
    )
    write_result(args, result)


if __name__ == "__main__":
    main()
