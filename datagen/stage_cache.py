"""A content-addressed cache of non-LLM stage results: a resumed or re-run job skips finished rows.

The LLM-call cache (datagen/cache.py) makes a resumed job skip the completions it already paid
for; this cache does the same for the costly stages that call no LLM: `execute`,
`sql_reference` and `synthesize_tests` (the sandbox) and `score` (a reward model). It is a
`LanceKeyValueCache` (datagen/lance_kv.py) of its own, `_cache/stage_results.lance` beside
`_cache/llm_calls.lance`, and `--no-cache` turns both off.

The key of a row's result is the sha256 of the stage's scope and the row's inputs:

- the scope is the stage kind and every setting its result depends on (for a sandbox stage its
  spec without the performance knobs, the sandbox limits, the backend that ran it and the Docker
  image's id; for `score` the reward model's identity and `max_length`), and the names and Arrow
  types of the columns it writes;
- the inputs are the values the stage reads from the row (program, language, tests; for a list
  of completions only their texts, since a completion's `cached` flag and latency differ
  between a run and its re-run).

The value is the row's written columns as an Arrow IPC stream of one row, so a hit gives back
exactly the Arrow types the stage declares, nested verdict structs included. Workers put every
finished batch at once, so a killed job keeps what it finished. Only results are cached, never a
row's failure (a sandbox error, a malformed row): those are retried. A verdict the sandbox gave
is cached whatever it is, `timeout` included: a program that timed out on an overloaded machine
times out again on a re-run without running (clear the cache, or run with `--no-cache`, to give
it another chance).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from datagen.lance_kv import LanceKeyValueCache
from datasets_registry import canonical_hash

if TYPE_CHECKING:
    from datagen.stages.base import Row, RowResult

STAGE_RESULTS_TABLE = "stage_results.lance"
RESULT_FIELD = pa.field("result", pa.binary())


def stage_results_uri(llm_cache_uri: str) -> str:
    """The stage-result table of a registry: beside its LLM-call cache, in the `_cache` folder."""
    return f"{llm_cache_uri.rstrip('/').rsplit('/', 1)[0]}/{STAGE_RESULTS_TABLE}"


def encode_result(result: Row, schema: pa.Schema) -> bytes:
    """One row's written columns as an Arrow IPC stream (raises if they do not fit `schema`)."""
    columns = {field.name: pa.array([result[field.name]], field.type) for field in schema}
    table = pa.table(columns, schema=schema)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def decode_result(data: bytes, schema: pa.Schema) -> Row | None:
    """The row `encode_result` stored, or None when it was stored with other columns or types."""
    table = pa.ipc.open_stream(data).read_all()
    if not table.schema.equals(schema) or table.num_rows != 1:
        return None
    return table.to_pylist()[0]


def result_inputs(value: Any) -> Any:
    """The part of a read value a stage's result depends on: a completion (a `generate` stage's
    struct, with `text` and `cached`) counts by its text alone, in lists and structs too; its
    `cached` flag and latency differ between a run and its re-run."""
    if isinstance(value, dict):
        if "text" in value and "cached" in value:
            return value["text"]
        return {name: result_inputs(item) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [result_inputs(item) for item in value]
    return value


class StageResultCache(LanceKeyValueCache):
    """The stage-result cache as one stage's worker sees it: keys under the stage's scope.

    Args:
        uri: The stage-result table (`stage_results_uri`).
        scope: The stage kind and the settings its results depend on (JSON-able).
        writes: The columns the stage writes, with their Arrow types (part of the scope too).
    """

    def __init__(self, uri: str, scope: Mapping[str, Any], writes: Mapping[str, pa.DataType]) -> None:
        super().__init__(uri, RESULT_FIELD)
        self.columns = pa.schema(list(writes.items()))
        self.scope = canonical_hash({"scope": dict(scope), "writes": {n: str(t) for n, t in writes.items()}})

    def key(self, inputs: Any) -> str:
        """The key of a row's result: its scope and its inputs."""
        return canonical_hash({"scope": self.scope, "inputs": inputs})

    def process(
        self,
        rows: list[Row],
        process_rows: Callable[[list[Row]], list[RowResult]],
        inputs: Callable[[Row], Any],
    ) -> tuple[list[RowResult], int]:
        """Results of `rows`: cached ones looked up, the rest computed by `process_rows` and stored.

        Args:
            rows: The batch's rows (the stage's read columns).
            process_rows: The stage's own processing, for the rows not cached.
            inputs: What a row's result depends on; a row for which it raises is computed and
                not cached (its processing reports the problem).

        Returns:
            One result per row, and how many came from the cache.
        """
        keys: list[str | None] = []
        for row in rows:
            try:
                keys.append(self.key(inputs(row)))
            except Exception:  # noqa: BLE001 - a malformed row fails in the stage's own processing
                keys.append(None)
        cached: dict[str, Row] = {}
        for key, data in self.get([k for k in keys if k is not None]).items():
            if (row := decode_result(data, self.columns)) is not None:
                cached[key] = row
        missing = [i for i, key in enumerate(keys) if key not in cached]
        computed = process_rows([rows[i] for i in missing]) if missing else []
        fresh: dict[str, bytes] = {}
        for index, result in zip(missing, computed, strict=True):
            key = keys[index]
            if key is None or isinstance(result, Exception):
                continue  # failures are never cached: a re-run retries them
            try:
                fresh[key] = encode_result(result, self.columns)
            except (KeyError, pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
                continue  # it does not fit the columns: process_table fails the row
        self.put(fresh)  # at once: a job killed after this batch keeps it
        by_index = dict(zip(missing, computed, strict=True))
        results = [by_index[i] if i in by_index else cached[str(key)] for i, key in enumerate(keys)]
        return results, len(rows) - len(missing)


class CacheCounter:
    """Counts a stage's cache hits and computed rows across its Ray actors (a small counter actor
    created by the driver, its handle shipped with the stage), for the stage's metrics."""

    def __init__(self, stage_name: str) -> None:
        from datagen.job_console import start_counter

        self.stage_name = stage_name
        self.actor = start_counter()

    def add(self, hits: int, computed: int) -> None:
        """Record one batch (waited for: every batch is counted when the dataset is done)."""
        import ray

        ray.get(self.actor.add.remote(self.stage_name, {"hits": float(hits), "computed": float(computed)}))

    def metrics(self) -> dict[str, Any]:
        """`{"stage_cache": {"hits": H, "computed": C}}`: rows taken from the cache and rows the
        stage processed itself (sent to the sandbox or the model)."""
        import ray

        counts = ray.get(self.actor.snapshot.remote()).get(self.stage_name, {})
        hits, computed = int(counts.get("hits", 0)), int(counts.get("computed", 0))
        return {"stage_cache": {"hits": hits, "computed": computed}}


class StageCacheUser:
    """What a stage using the stage-result cache keeps: the table's uri (None: caching off) and,
    once `apply` ran, the counter its actors report to (hits are 0 with caching off)."""

    stage_cache_uri: str | None = None
    cache_counter: CacheCounter | None = None
    # Part of every key: bump it when a change to the stage's code changes what it writes, so
    # results stored by the old code are not taken.
    results_version: int = 1

    def start_cache_counter(self, stage_name: str) -> None:
        """Start the counter (in the driver, before the stage's actors are built)."""
        self.cache_counter = CacheCounter(stage_name)

    def cache_metrics(self) -> dict[str, Any]:
        """The stage's cache hits and computed rows, or {} before `apply`."""
        return self.cache_counter.metrics() if self.cache_counter is not None else {}


def process_with_cache(
    stage: StageCacheUser,
    worker_cache: StageResultCache | None,
    rows: list[Row],
    process_rows: Callable[[list[Row]], list[RowResult]],
    inputs: Callable[[Row], Any],
) -> list[RowResult]:
    """`process_rows(rows)` through the worker's cache when the stage has one, counting hits."""
    if worker_cache is None:
        results, hits = process_rows(rows), 0
    else:
        results, hits = worker_cache.process(rows, process_rows, inputs)
    if stage.cache_counter is not None:
        stage.cache_counter.add(hits, len(rows) - hits)
    return results
