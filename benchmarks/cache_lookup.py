"""LLM-call cache: a batch lookup of 100 keys at 10k, 100k and 1M cached calls, new vs old.

New: `datagen.cache.CompletionCache`, filled through its own `put` (merge_insert, index refresh,
compaction) in batches of `--put-rows`. Old: the cache before issue 21, reimplemented here as
the baseline: one appended fragment per put, no index, and a lookup that opens the table and
filters every fragment (`key IN (...)`). Its table is written in one go with the layout its
appends left, one fragment per put of `--old-put-rows` rows (the old default, a worker's batch of
16 rows, would give 64 times more fragments: the baseline is kind to the old cache).

Each lookup asks for 100 keys that are present, drawn at random. New: the first lookup of a
fresh cache object (cold: Lance's index cache is empty, so it reads the index pages it needs; the
files may be in the OS page cache), the median over `--cold-repeats` fresh objects, and the
median of `--repeats` more lookups on one object (warm: a worker's next batches). Old: the median
of its lookups. Also timed: one put of 16 new rows (new: a merge_insert that checks every stored
key; old: an append).

    .venv/bin/python benchmarks/cache_lookup.py [--sizes 10000 100000 1000000] [--record]

Writes benchmarks/out/cache_lookup.json (untracked), or benchmarks/results/cache_lookup.json
with --record (benchmarks/results_io.py).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lance
import pyarrow as pa
from results_io import add_output_args, write_result

from datagen.cache import CompletionCache
from datagen.engines.base import COMPLETIONS_TYPE

OLD_SCHEMA = pa.schema([("key", pa.string()), ("completions", COMPLETIONS_TYPE)])
LOOKUP_KEYS = 100
GOAL_MS = 50.0


def key_of(i: int) -> str:
    """The cache key of call number i (a sha256, as `call_key` gives)."""
    return hashlib.sha256(f"call {i}".encode()).hexdigest()


def completions_of(i: int, samples: int, chars: int) -> list[dict[str, Any]]:
    """`samples` completions of about `chars` characters for call number i."""
    words = " ".join(f"w{(i * 7 + j) % 997}" for j in range(chars // 5))[:chars]
    return [
        dict(text=f"{i}/{k}: {words}", model="bench-model", temperature=0.7, finish_reason="stop",
             prompt_tokens=40, completion_tokens=chars // 4, cached=False, latency_s=0.5)
        for k in range(samples)
    ]  # fmt: skip


def batches(start: int, stop: int, rows: int, samples: int, chars: int) -> Iterator[dict[str, list]]:
    """Calls start..stop as {key: completions} dicts of `rows` calls each."""
    for first in range(start, stop, rows):
        yield {key_of(i): completions_of(i, samples, chars) for i in range(first, min(first + rows, stop))}


def as_table(entries: dict[str, list]) -> pa.Table:
    return pa.table(
        {"key": list(entries), "completions": pa.array(list(entries.values()), COMPLETIONS_TYPE)},
        schema=OLD_SCHEMA,
    )


class OldScanCache:
    """The cache before issue 21 (baseline): appends, no index, every lookup scans every fragment."""

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def get(self, keys: list[str]) -> dict[str, list]:
        dataset = lance.dataset(self.uri)
        wanted = ", ".join(f"'{key}'" for key in set(keys))
        table = dataset.to_table(filter=f"key IN ({wanted})")
        return dict(zip(table["key"].to_pylist(), table["completions"].to_pylist(), strict=True))

    def put(self, entries: dict[str, list]) -> None:
        lance.write_dataset(as_table(entries), self.uri, mode="append")


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = call()
    return (time.perf_counter() - started) * 1000, result


def lookup(cache: Any, size: int, rng: random.Random) -> float:
    """Milliseconds to look up 100 random present keys; checks every one came back."""
    keys = [key_of(i) for i in rng.sample(range(size), LOOKUP_KEYS)]
    ms, found = timed(lambda: cache.get(keys))
    if len(found) != LOOKUP_KEYS:
        raise SystemExit(f"{type(cache).__name__}: {len(found)} of {LOOKUP_KEYS} keys found")
    return ms


def run_size(size: int, args: argparse.Namespace, workdir: Path, rng: random.Random) -> dict:
    samples, chars = args.samples, args.chars
    new_uri, old_uri = str(workdir / f"new-{size}.lance"), str(workdir / f"old-{size}.lance")

    started = time.perf_counter()
    builder = CompletionCache(new_uri)
    for entries in batches(0, size, args.put_rows, samples, chars):
        builder.put(entries)
    new_build_s = time.perf_counter() - started
    started = time.perf_counter()
    old_batches = batches(0, size, args.old_put_rows, samples, chars)
    reader = pa.RecordBatchReader.from_batches(
        OLD_SCHEMA, (b for entries in old_batches for b in as_table(entries).to_batches())
    )
    lance.write_dataset(reader, old_uri, max_rows_per_file=args.old_put_rows)
    old_build_s = time.perf_counter() - started

    cold = [lookup(CompletionCache(new_uri), size, rng) for _ in range(args.cold_repeats)]
    new_cold = statistics.median(cold)
    new = CompletionCache(new_uri)
    lookup(new, size, rng)  # its cold lookup
    new_warm = statistics.median(lookup(new, size, rng) for _ in range(args.repeats))
    old = OldScanCache(old_uri)
    old_ms = statistics.median(lookup(old, size, rng) for _ in range(args.old_repeats))

    fresh = next(batches(size, size + 16, 16, samples, chars))
    new_put, _ = timed(lambda: new.put(fresh))
    old_put, _ = timed(lambda: old.put(fresh))
    dataset = lance.dataset(new_uri)
    return {
        "cached_calls": size,
        "new": {
            "lookup_warm_ms": new_warm,
            "lookup_cold_ms": new_cold,
            "put_16_ms": new_put,
            "build_s": new_build_s,
            "fragments": len(dataset.get_fragments()),
            "versions": len(dataset.versions()),
            "storage_version": dataset.data_storage_version,
        },
        "old_scan": {
            "lookup_ms": old_ms,
            "put_16_ms": old_put,
            "build_s": old_build_s,
            "fragments": len(lance.dataset(old_uri).get_fragments()),
            "storage_version": lance.dataset(old_uri).data_storage_version,
        },
        "ratio_old_over_new_warm": old_ms / new_warm,
        "ratio_old_over_new_cold": old_ms / new_cold,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--samples", type=int, default=2, help="completions per call")
    parser.add_argument("--chars", type=int, default=300, help="characters per completion")
    parser.add_argument("--put-rows", type=int, default=10_000, help="calls per put, new cache")
    parser.add_argument("--old-put-rows", type=int, default=1024, help="calls per fragment, old")
    parser.add_argument("--repeats", type=int, default=10, help="warm lookups, new cache")
    parser.add_argument("--cold-repeats", type=int, default=3, help="cold lookups, new cache")
    parser.add_argument("--old-repeats", type=int, default=3, help="lookups, old cache")
    parser.add_argument("--workdir", type=Path, default=None, help="where the tables go (deleted)")
    add_output_args(parser, "cache_lookup")
    args = parser.parse_args()

    rng = random.Random(0)
    workdir = Path(tempfile.mkdtemp(prefix="cache-lookup-", dir=args.workdir))
    results = []
    try:
        for size in args.sizes:
            result = run_size(size, args, workdir, rng)
            results.append(result)
            new, old = result["new"], result["old_scan"]
            print(
                f"{size:>9,} cached calls: new {new['lookup_warm_ms']:7.1f} ms warm, "
                f"{new['lookup_cold_ms']:7.1f} ms cold | old scan {old['lookup_ms']:8.1f} ms "
                f"({old['fragments']} fragments) | ratio {result['ratio_old_over_new_warm']:6.1f}x warm, "
                f"{result['ratio_old_over_new_cold']:5.1f}x cold | put of 16: new {new['put_16_ms']:.0f} ms, "
                f"old {old['put_16_ms']:.0f} ms",
                flush=True,
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    largest = results[-1]["new"]["lookup_warm_ms"]
    print(f"goal: < {GOAL_MS:g} ms for {LOOKUP_KEYS} keys at the largest size, roughly flat: "
          f"{largest:.1f} ms warm")  # fmt: skip
    write_result(
        args,
        {
            "benchmark": "cache_lookup",
            "lookup_keys": LOOKUP_KEYS,
            "samples_per_call": args.samples,
            "chars_per_completion": args.chars,
            "new_put_rows": args.put_rows,
            "old_rows_per_fragment": args.old_put_rows,
            "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
            "lance": lance.__version__,
            "sizes": results,
            "goal": f"< {GOAL_MS:g} ms at 1M, roughly flat",
        },
    )


if __name__ == "__main__":
    main()
