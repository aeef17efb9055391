"""Registry stats, diff and a range filter on 1M sft-like rows; Lance vs Parquet for the filter.

Builds 1,000,000 rows (id, language, source, two-turn messages of 50-300 characters each,
a scores struct, and an int64 `n` 0..999999), registers them as version 1, then version 2 with
about 1 % of rows removed, 1 % added and 1 % changed. Measures, in one run: `compute_stats` on
v2, `diff_versions(v1, v2)`, and a 1 % range filter on `n` (all columns) on the Lance version
against the same filter on a Parquet file of the same data written by pyarrow (best of 3 each).
Prints every figure and the ratio parquet_time / lance_time, and writes them as JSON.

    .venv/bin/python benchmarks/registry_1m.py [--rows 1000000] [--record]
"""

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from results_io import add_output_args, write_result

from datasets_registry import Registry
from datasets_registry.diff import diff_versions
from datasets_registry.kinds import MESSAGES_TYPE
from datasets_registry.stats import compute_stats

LANGUAGES = ["en", "fr", "de", "es", "ar", "ja", "zh", "hi", "pt", "ru"]
LANGUAGE_WEIGHTS = [0.40, 0.10, 0.08, 0.08, 0.07, 0.07, 0.06, 0.05, 0.05, 0.04]
SOURCES = ["arbitrage", "best-of-n", "seed-prompts", "translated", "self-instruct"]
WORDS = (
    "the model should answer question about data with a short clear list of steps and explain why each "
    "step matters for users who write code in python or rust while tests check every edge case carefully "
    "translate this paragraph into plain language keeping names numbers and units exactly as given above"
).split()
CHUNK_ROWS = 100_000
FILTER = "n >= 500000 AND n < 510000"


def text_pool(rng: np.random.Generator, size: int) -> np.ndarray:
    """`size` bytes of ASCII word salad: strings are windows into it, so building them is cheap."""
    words = rng.choice(np.array(WORDS, dtype=object), size=size // 4)
    data = np.frombuffer(" ".join(words).encode(), dtype=np.uint8)
    return data[:size].copy()


def string_array(pool: np.ndarray, lengths: np.ndarray, rng: np.random.Generator) -> pa.Array:
    """Strings of the given lengths, cut one after another out of a random window of `pool`."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    start = int(rng.integers(0, len(pool) - offsets[-1]))
    data = pool[start : start + offsets[-1]]
    return pa.LargeStringArray.from_buffers(len(lengths), pa.py_buffer(offsets), pa.py_buffer(data)).cast(
        pa.string()
    )


def hex_ids(hashes: np.ndarray) -> pa.Array:
    """16-character hex strings of uint64 hashes, without a Python loop."""
    text = hashes.astype(">u8").tobytes().hex().encode()
    offsets = np.arange(0, 16 * (len(hashes) + 1), 16, dtype=np.int32)
    return pa.StringArray.from_buffers(len(hashes), pa.py_buffer(offsets), pa.py_buffer(text))


def build_chunk(pool: np.ndarray, first_n: int, rows: int, seed: int) -> pa.Table:
    """`rows` sft rows numbered from `first_n`; the same arguments give the same rows."""
    rng = np.random.default_rng(seed)
    user = string_array(pool, rng.integers(50, 301, rows), rng)
    assistant = string_array(pool, rng.integers(50, 301, rows), rng)
    # Interleave user and assistant turns: message 2i is row i's user turn, 2i+1 its answer.
    order = np.empty(2 * rows, dtype=np.int64)
    order[0::2] = np.arange(rows)
    order[1::2] = np.arange(rows) + rows
    content = pa.concat_arrays([user, assistant]).take(pa.array(order))
    roles = pa.array(np.tile(np.array(["user", "assistant"], dtype=object), rows), pa.string())
    messages = pa.ListArray.from_arrays(
        pa.array(np.arange(0, 2 * rows + 1, 2, dtype=np.int32)),
        pa.StructArray.from_arrays([roles, content], names=["role", "content"]),
        type=MESSAGES_TYPE,
    )
    n = np.arange(first_n, first_n + rows, dtype=np.int64)
    # Ids are derived from the prompt and `n`, so rescoring or revising an answer keeps the id.
    prompt_hash = pl.DataFrame({"u": pa.chunked_array([user]), "n": n}).hash_rows(seed=7).to_numpy()
    scores = pa.StructArray.from_arrays(
        [
            pa.array(rng.beta(5, 2, rows)),
            pa.array(rng.beta(2, 5, rows)),
            pa.array(rng.choice([0.3, 0.7, 1.0], rows)),
        ],
        names=["ifeval_best", "ifeval_worst", "best_temperature"],
    )
    return pa.table(
        {
            "id": hex_ids(prompt_hash),
            "language": pa.array(rng.choice(LANGUAGES, rows, p=LANGUAGE_WEIGHTS), pa.string()),
            "source": pa.array(rng.choice(SOURCES, rows), pa.string()),
            "messages": messages,
            "scores": scores,
            "n": n,
        }
    )


def revise(table: pa.Table, changed: np.ndarray, rng: np.random.Generator) -> pa.Table:
    """Change the rows where `changed` is true: half get new scores, half a revised answer."""
    frame = pl.from_arrow(table)
    rescored = changed & (rng.random(len(changed)) < 0.5)
    rewritten = changed & ~rescored
    new_best = pl.Series(rng.beta(5, 2, len(changed)))
    return (
        frame.with_columns(
            pl.when(pl.Series(rescored))
            .then(pl.col("scores").struct.with_fields(ifeval_best=new_best))
            .otherwise(pl.col("scores"))
            .alias("scores"),
            pl.when(pl.Series(rewritten))
            .then(
                pl.col("messages").list.eval(
                    pl.element().struct.with_fields(pl.concat_str(pl.field("content"), pl.lit(" (revised)")))
                )
            )
            .otherwise(pl.col("messages"))
            .alias("messages"),
        )
        .to_arrow()
        .cast(table.schema)
    )  # polars hands back large_string; keep v1's types


def build_versions(rows: int, seed: int = 0) -> tuple[pa.Table, pa.Table]:
    """Version 1 (`rows` rows) and version 2 (~1 % removed, ~1 % added, ~1 % changed)."""
    rng = np.random.default_rng(seed)
    pool = text_pool(rng, 64 << 20)
    v1_chunks, v2_chunks = [], []
    for index, start in enumerate(range(0, rows, CHUNK_ROWS)):
        chunk = build_chunk(pool, start, min(CHUNK_ROWS, rows - start), seed=seed * 1000 + index)
        v1_chunks.append(chunk)
        draw = rng.random(chunk.num_rows)
        kept = chunk.filter(pa.array(draw >= 0.01))
        v2_chunks.append(revise(kept, (draw[draw >= 0.01] < 0.02), rng))
    added = build_chunk(pool, rows, max(1, rows // 100), seed=seed * 1000 + 999)
    v1 = pa.concat_tables(v1_chunks).combine_chunks()
    v2 = pa.concat_tables([*v2_chunks, added]).combine_chunks()
    return v1, v2


def best_of(runs: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    """The shortest wall time of `runs` calls of `fn`, and the last result."""
    best, result = float("inf"), None
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    add_output_args(parser, "registry_1m")
    args = parser.parse_args()

    started = time.perf_counter()
    v1_table, v2_table = build_versions(args.rows)
    build_s = time.perf_counter() - started
    print(f"built v1 {v1_table.num_rows:,} rows, v2 {v2_table.num_rows:,} rows in {build_s:.1f} s")

    with tempfile.TemporaryDirectory(prefix="registry-1m-") as tmp:
        registry = Registry(Path(tmp) / "registry")
        started = time.perf_counter()
        v1 = registry.write("bench-sft", v1_table, kind="sft")
        lance_write_s = time.perf_counter() - started
        v2 = registry.write("bench-sft", v2_table, kind="sft")
        del v2_table
        parquet_path = Path(tmp) / "v1.parquet"
        started = time.perf_counter()
        pq.write_table(v1_table, parquet_path)
        parquet_write_s = time.perf_counter() - started
        # A second baseline tuned for filtering: pyarrow's default puts all 1M rows in one row
        # group, so its min/max statistics cannot skip anything.
        tuned_path = Path(tmp) / "v1-rg100k.parquet"
        pq.write_table(v1_table, tuned_path, row_group_size=100_000)
        del v1_table
        print(f"write v1: lance {lance_write_s:.2f} s, parquet {parquet_write_s:.2f} s")

        stats_s, stats = best_of(1, lambda: compute_stats(v2))
        print(f"compute_stats({v2.ref}): {stats_s:.2f} s (goal < 10 s)")
        diff_s, diff = best_of(1, lambda: diff_versions(v1, v2))
        print(
            f"diff_versions({v1.ref}, {v2.ref}): {diff_s:.2f} s (goal < 10 s); "
            f"added {diff.added.count:,}, removed {diff.removed.count:,}, changed {diff.changed.count:,}"
        )

        lance_s, lance_rows = best_of(3, lambda: v1.to_arrow(filter=FILTER).num_rows)
        parquet_s, parquet_rows = best_of(
            3,
            lambda: pq.read_table(parquet_path, filters=[("n", ">=", 500000), ("n", "<", 510000)]).num_rows,
        )
        tuned_s, tuned_rows = best_of(
            3,
            lambda: pq.read_table(tuned_path, filters=[("n", ">=", 500000), ("n", "<", 510000)]).num_rows,
        )
        if not lance_rows == parquet_rows == tuned_rows:
            raise SystemExit(f"filters disagree: lance {lance_rows}, parquet {parquet_rows}, {tuned_rows}")
        ratio = parquet_s / lance_s
        tuned_ratio = tuned_s / lance_s
        print(
            f"range filter `{FILTER}` ({lance_rows:,} rows, all columns), best of 3: "
            f"lance {lance_s * 1000:.1f} ms, parquet {parquet_s * 1000:.1f} ms, "
            f"parquet with 100k-row groups {tuned_s * 1000:.1f} ms"
        )
        print(f"ratio parquet_time / lance_time: {ratio:.1f}x (goal >= 10x)")
        print(f"ratio parquet_100k_groups_time / lance_time: {tuned_ratio:.1f}x")

    result = {
        "benchmark": "registry_1m",
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "rows_v1": v1.num_rows,
        "rows_v2": v2.num_rows,
        "build_s": build_s,
        "lance_write_s": lance_write_s,
        "parquet_write_s": parquet_write_s,
        "compute_stats_s": stats_s,
        "diff_versions_s": diff_s,
        "diff": {"added": diff.added.count, "removed": diff.removed.count, "changed": diff.changed.count},
        "stats_row_count": stats.row_count,
        "filter": FILTER,
        "filter_rows": lance_rows,
        "lance_filter_s": lance_s,
        "parquet_filter_s": parquet_s,
        "ratio_parquet_over_lance": ratio,
        "parquet_100k_row_groups_filter_s": tuned_s,
        "ratio_parquet_100k_row_groups_over_lance": tuned_ratio,
        "goals": {"compute_stats_s": "< 10", "diff_versions_s": "< 10", "ratio": ">= 10"},
    }
    write_result(args, result)


if __name__ == "__main__":
    main()
