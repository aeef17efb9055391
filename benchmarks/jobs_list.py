"""How fast `assay jobs list` answers with 10,000 jobs in the store.

Fills a fresh job store with N jobs (a third each queued, succeeded and failed, with progress
and accounting like real ones), then times:
- the store query `jobs list` makes (the newest 50 and the count per state) and the whole list;
- `assay jobs list` as a command, end to end, against `assay --help` in the same run (the
  baseline: Python, typer and the CLI's imports, with no store at all).

Run: .venv/bin/python benchmarks/jobs_list.py [--jobs 10000]
"""

from __future__ import annotations

import argparse
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


def fill(store: JobStore, count: int) -> None:
    """Insert `count` jobs in one transaction (the submit path, minus a fsync per job)."""
    import json

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    add_output_args(parser, "jobs_list")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = str(Path(folder) / "registry")
        store = JobStore(store_path(root))
        fill(store, args.jobs)
        query_s = best_of(lambda: (store.list(limit=50), store.counts()), args.repeats)
        all_s = best_of(lambda: store.list(), args.repeats)
        assay = str(Path(sys.executable).parent / "assay")
        env = {**os.environ, "ASSAY_REGISTRY": root, "COLUMNS": "160"}

        def command(*argv: str) -> None:
            subprocess.run([assay, *argv], env=env, check=True, capture_output=True)

        cli_s = [best_of(lambda: command("jobs", "list"), 1) for _ in range(args.repeats)]
        help_s = [best_of(lambda: command("--help"), 1) for _ in range(args.repeats)]
    result = {
        "jobs": args.jobs,
        "query_newest_50_and_counts_s": round(query_s, 4),
        "query_all_jobs_s": round(all_s, 4),
        "cli_jobs_list_s_median": round(statistics.median(cli_s), 3),
        "cli_help_baseline_s_median": round(statistics.median(help_s), 3),
        "cli_overhead_over_baseline_s": round(statistics.median(cli_s) - statistics.median(help_s), 3),
        "ratio_cli_list_to_help": round(statistics.median(cli_s) / statistics.median(help_s), 2),
        "cpus": os.cpu_count(),
    }
    for key, value in result.items():
        print(f"{key}: {value}")
    write_result(args, result)


if __name__ == "__main__":
    main()
