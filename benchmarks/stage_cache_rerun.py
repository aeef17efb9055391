"""A re-run of a job with an `execute` stage: every program executed again vs the stage-result cache.

What a resumed (killed) job used to redo: its sandbox stage over every row. The job: a JSONL
source of `--programs` programs (MBPP train tasks 601-974 from ../shared/data, a reference and a
broken variant each, as in code_execute_throughput.py; without ../shared/data, small synthetic
programs), one `execute` stage (one actor, a warm Docker sandbox of `--pool` containers), one
generic output, run through `prepare_job`/`run_job` in a fresh registry, in one Ray started once.

1. a first run with the cache on: executes everything and fills `_cache/stage_results.lance`;
2. then, alternately, `--repeats` times each: the re-run without the stage cache (`--no-cache`:
   every program executed again, what resume did before) and the re-run with it (every row a
   hit, no program runs).

Times are whole jobs (`JobReport.wall_s`: the plan, the actor's start and its sandbox's warm-up,
materialising, registering). Prints the medians and their ratio, checks that both re-runs
register the same verdicts, and writes a JSON result. Run it under the heavy lock:

    .venv/bin/python benchmarks/stage_cache_rerun.py --programs 100
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from code_execute_throughput import MBPP, load_rows  # noqa: E402
from results_io import add_output_args, write_result  # noqa: E402


def programs(count: int) -> tuple[list[dict], str]:
    """The rows to execute and where they come from."""
    if MBPP.is_file():
        return load_rows(count), "mbpp train 601-974 (reference + broken)"
    tests = "assert add(1, 2) == 3\nassert add(2, 2) == 4\n"
    rows = [
        {
            "id": f"p{k}",
            "language": "python",
            "tests": tests,
            "program": f"def add(a, b):\n    return a + b + {k % 2}  # {k}\n",
        }  # fmt: skip
        for k in range(count)
    ]
    return rows, "synthetic add(a, b), half broken"


def write_spec(folder: Path, rows: list[dict], pool: int) -> Path:
    import yaml

    (folder / "programs.jsonl").write_text("\n".join(json.dumps(row) for row in rows))
    spec = {
        "name": "stage-cache-rerun",
        "source": {"path": "programs.jsonl"},
        "stages": [
            {
                "type": "execute",
                "name": "execute",
                "program": "program",
                "extract": False,
                "actors": 1,
                "batch_size": 16,
                "max_concurrency": pool,
                "sandbox": {"backend": "docker", "pool_size": pool},
            },
        ],  # fmt: skip
        "outputs": [{"dataset": "programs", "kind": "generic"}],
        "ray": {"num_cpus": 2},
    }
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def run(path: Path, registry, *, use_cache: bool) -> tuple[float, dict[str, int], dict[str, str]]:  # noqa: ANN001
    """One job: its wall time, its stage-cache counts and the verdicts it registered."""
    from datagen.job import prepare_job, run_job
    from datagen.spec import load_spec
    from model_store import ModelStore

    job = prepare_job(load_spec(path), registry, ModelStore(path.parent / "models"), use_cache=use_cache)
    report = run_job(job, registry, log=lambda _: None)
    (output,) = report.outputs
    table = registry.open(output.ref).to_arrow()
    verdicts = dict(zip(table["id"].to_pylist(), table["verdict"].to_pylist(), strict=True))
    return report.wall_s, report.stage_metrics["execute"]["stage_cache"], verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--programs", type=int, default=100, help="programs the job executes")
    parser.add_argument("--pool", type=int, default=2, help="warm containers and executions in flight")
    parser.add_argument("--repeats", type=int, default=3, help="re-runs of each kind, alternating")
    add_output_args(parser, "stage_cache_rerun")
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    from datagen.job import start_ray
    from datasets_registry import Registry

    rows, origin = programs(args.programs)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="stage-cache-bench-") as tmp:
        folder = Path(tmp)
        path = write_spec(folder, rows, args.pool)
        registry = Registry(folder / "registry")
        start_ray(None, 2)
        try:
            first_s, first_counts, first = run(path, registry, use_cache=True)
            plain_s, cached_s = [], []
            for _ in range(args.repeats):
                wall, counts, plain = run(path, registry, use_cache=False)
                assert counts == {"hits": 0, "computed": len(rows)}, counts
                plain_s.append(wall)
                wall, counts, cached = run(path, registry, use_cache=True)
                assert counts == {"hits": len(rows), "computed": 0}, counts
                cached_s.append(wall)
                if plain != first or cached != first:
                    sys.exit("the re-runs registered other verdicts than the first run")
        finally:
            ray.shutdown()
    load_after = os.getloadavg()
    without, with_cache = statistics.median(plain_s), statistics.median(cached_s)
    result = {
        "programs": len(rows),
        "origin": origin,
        "pool": args.pool,
        "passed": sum(v == "passed" for v in first.values()),
        "first_run_s": round(first_s, 2),
        "first_run_counts": first_counts,
        "rerun_without_stage_cache_s": [round(s, 2) for s in plain_s],
        "rerun_with_stage_cache_s": [round(s, 2) for s in cached_s],
        "median_without_s": round(without, 2),
        "median_with_s": round(with_cache, 2),
        "speedup": round(without / with_cache, 2),
        "load_average_1m_before_after": [round(load_before[0], 1), round(load_after[0], 1)],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    print(
        f"{len(rows)} programs ({result['passed']} pass, {origin}), pool {args.pool}: first run "
        f"{result['first_run_s']} s; re-run without the stage cache {result['median_without_s']} s, "
        f"with it {result['median_with_s']} s (medians of {args.repeats}): {result['speedup']}x; "
        f"load average {result['load_average_1m_before_after']}"
    )
    write_result(args, result)


if __name__ == "__main__":
    main()
