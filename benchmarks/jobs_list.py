"""How fast `assay jobs list` answers with 10,000 jobs in the store, as a whole command.

Fills a fresh job store with N jobs (a third each queued, succeeded and failed, with progress
and accounting like real ones), then times:
- the store query `jobs list` makes (the newest 50 and the count per state) and the whole list;
- `assay jobs list` as a command, process start to exit, against three baselines measured in
  the same run, interleaved (one of each per round, so a load spike on this shared machine hits
  them alike): `python -c pass` (the interpreter alone), `assay --version` (the CLI's imports
  plus typer's parameter handling) and `assay --help`;
- which modules the command imports (`python -X importtime`): none of the heavy libraries
  (Ray, Lance, pyarrow, torch, transformers, the registry, the pipeline) may be among them;
- with `--before DIR`, the same command from an older copy of the code (`git archive REV assay
  datagen | tar -x -C DIR`, run with PYTHONPATH=DIR), interleaved too: before and after in one run.

The target (issue 18) is a median under 0.5 s for `assay jobs list` at 10,000 jobs.

Run: .venv/bin/python benchmarks/jobs_list.py [--jobs 10000] [--repeats 9]
     [--before DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from results_io import add_output_args, write_result  # noqa: E402

from datagen.jobs.store import JobState, JobStore, store_path  # noqa: E402

SPEC = "name: bench\nsource: {path: rows.jsonl}\nstages: [{type: render, template: t.j2}]\n"
TARGET_S = 0.5
HEAVY = ("ray", "lance", "pyarrow", "torch", "transformers", "vllm", "polars", "numpy", "pandas",
         "datasets_registry", "datagen.job", "datagen.spec", "model_store", "psutil")  # fmt: skip


def fill(store: JobStore, count: int) -> None:
    """Insert `count` jobs in one transaction (the submit path, minus a fsync per job)."""
    with store._write() as db:  # noqa: SLF001 - bulk fill for the benchmark only
        for i in range(count):
            state = [JobState.QUEUED, JobState.SUCCEEDED, JobState.FAILED][i % 3]
            db.execute(
                "INSERT INTO jobs (id, name, spec_path, spec_text, spec_hash, priority, state, attempts,"
                " submitted_at, progress, accounting, outputs) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (f"bench-{i:08x}", "bench", "/x/spec.yaml", SPEC, "0" * 64, i % 3, str(state), 1,
                 time.time(), json.dumps({"phase": "done", "rows_done": 40, "rows_total": 40}),
                 json.dumps({"completions": 80, "cache_hits": 0, "wall_s": 12.5}),
                 json.dumps([f"bench-out@{i}"])),
            )  # fmt: skip


def best_of(fn: object, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return min(times)


def timed(argv: list[str], env: dict[str, str]) -> float:
    """Seconds from process start to exit (the command must succeed)."""
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - started


def imported_modules(argv: list[str], env: dict[str, str]) -> list[str]:
    """The modules a command imports, from `python -X importtime`."""
    run = subprocess.run([sys.executable, "-X", "importtime", *argv], env=env, check=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    return [line.rsplit("|", 1)[1].strip() for line in run.stderr.splitlines() if line.count("|") == 2][1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=9, help="rounds of the commands")
    parser.add_argument("--before", type=Path, default=None, help="an older copy of assay/ and datagen/")
    add_output_args(parser, "jobs_list")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        root = str(Path(folder) / "registry")
        store = JobStore(store_path(root))
        fill(store, args.jobs)
        query_s = best_of(lambda: (store.list(limit=50), store.counts()), 5)
        all_s = best_of(lambda: store.list(), 5)
        assay = str(Path(sys.executable).parent / "assay")
        env = {**os.environ, "ASSAY_REGISTRY": root, "COLUMNS": "160"}
        commands = {
            "python_pass": ([sys.executable, "-c", "pass"], env),
            "assay_version": ([assay, "--version"], env),
            "assay_help": ([assay, "--help"], env),
            "assay_jobs_list": ([assay, "jobs", "list"], env),
        }
        if args.before is not None:
            before_env = {**env, "PYTHONPATH": str(args.before.resolve())}
            commands["assay_jobs_list_before"] = ([assay, "jobs", "list"], before_env)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for argv, command_env in commands.values():  # warm the page cache once, untimed
            timed(argv, command_env)
        for _ in range(args.repeats):
            for name, (argv, command_env) in commands.items():
                times[name].append(timed(argv, command_env))
        modules = imported_modules(["-m", "assay", "jobs", "list"], env)
    heavy = sorted({m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)})
    median = {name: statistics.median(ts) for name, ts in times.items()}
    before = median.get("assay_jobs_list_before")
    result = {
        "jobs": args.jobs,
        "repeats": args.repeats,
        "query_newest_50_and_counts_s": round(query_s, 4),
        "query_all_jobs_s": round(all_s, 4),
        **{f"{name}_s_median": round(value, 3) for name, value in median.items()},
        **{f"{name}_s_min": round(min(times[name]), 3) for name in commands},
        "ratio_jobs_list_to_python_pass": round(median["assay_jobs_list"] / median["python_pass"], 2),
        "ratio_jobs_list_to_version": round(median["assay_jobs_list"] / median["assay_version"], 2),
        "ratio_jobs_list_to_help": round(median["assay_jobs_list"] / median["assay_help"], 2),
        "jobs_list_over_version_s": round(median["assay_jobs_list"] - median["assay_version"], 3),
        **({"ratio_before_to_after": round(before / median["assay_jobs_list"], 2)} if before else {}),
        "target_s": TARGET_S,
        "meets_target": median["assay_jobs_list"] < TARGET_S,
        "modules_imported_by_jobs_list": len(modules),
        "heavy_modules_imported_by_jobs_list": heavy,
        "load_average_1m_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "cpus": os.cpu_count(),
    }
    for key, value in result.items():
        print(f"{key}: {value}")
    write_result(args, result)


if __name__ == "__main__":
    main()
