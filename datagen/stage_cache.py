"""A content-addressed cache of non-LLM stage results: a resumed or re-run job skips finished rows.

The LLM-call cache (datagen/cache.py) makes a resumed job skip the completions it already paid
for; this cache does the same for the costly stages that call no LLM: `execute`,
`sql_reference`, `synthesize_tests` and `translation_check` (the sandbox) and `score` (a reward
model). It is a
`LanceKeyValueCache` (datagen/lance_kv.py) of its own, `_cache/stage_results.lance` beside
`_cache/llm_calls.lance`, and `--no-cache` turns both off.

The key of a row's result is the sha256 of the stage's scope and the row's inputs:

- the scope is the stage kind, a digest of the source of the code that decides its result (its
  own module and the modules it judges with: `result_modules`, hashed once per process), and
  every setting its result depends on (for a sandbox stage its spec without the performance
  knobs and without the fields that only name the columns it reads, the sandbox limits, the
  backend that ran it and the Docker image's id; for `score` the reward model's identity and
  `max_length`), and the names and Arrow types of the columns it writes;
- the inputs are the values the stage reads from the row (program, language, tests; for a list
  of completions only their texts, since a completion's `cached` flag and latency differ
  between a run and its re-run).

The value is the row's written columns as an Arrow IPC stream of one row, so a hit gives back
exactly the Arrow types the stage declares, nested verdict structs included. Workers put every
finished batch at once, so a killed job keeps what it finished. Only results are cached, never a
row's failure (a sandbox error, a malformed row): those are retried. Nor is a result any of whose
sandbox runs timed out (the stage returns it as `Uncached`): on a loaded machine a timeout is
often the load, not the program, so a re-run runs it again.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa

from datagen.lance_kv import LanceKeyValueCache
from datasets_registry import canonical_hash

if TYPE_CHECKING:
    import ray.data

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


class Uncached(dict):  # type: ignore[type-arg] - a row: column name -> value
    """A row's result to write but not to store in the cache: one of its sandbox runs timed out
    (the load of a shared machine may be to blame; the next run tries again)."""


def any_timeout(statuses: Iterable[str | None]) -> bool:
    """Whether any of these verdict statuses is a `timeout`."""
    return any(status == "timeout" for status in statuses)


def uncached_if(timed_out: bool, result: Row) -> Row:
    """`result`, marked `Uncached` when a run behind it timed out."""
    return Uncached(result) if timed_out else result


@functools.cache
def source_digest(modules: tuple[str, ...]) -> str:
    """The sha256 of the source of these modules (a package: every file under its folder, the
    non-Python ones too, such as the sandbox's harnesses), read once per process.

    Raises:
        ModuleNotFoundError: a module that does not exist.
    """
    digest = hashlib.sha256()
    for name in sorted(set(modules)):
        spec = importlib.util.find_spec(name)
        if spec is None:
            raise ModuleNotFoundError(f"no module named {name!r}")
        if spec.submodule_search_locations:
            files = sorted(
                path
                for folder in spec.submodule_search_locations
                for path in Path(folder).rglob("*")
                if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
            )
        else:
            assert spec.origin is not None, name
            files = [Path(spec.origin)]
        for path in files:
            digest.update(f"{name}:{path.name}:".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


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
            if key is None or isinstance(result, Exception | Uncached):
                continue  # failures and timed-out runs are never cached: a re-run retries them
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
    once `apply` ran, the counter its actors report to (hits are 0 with caching off).

    Its `metrics` are the stage's own (`result_metrics`) with the cache's counts merged in; a
    subclass overrides `result_metrics`, never `metrics` (refused when the class is defined, so
    no stage drops its hits).
    """

    stage_cache_uri: str | None = None
    cache_counter: CacheCounter | None = None
    # Part of every key: bump it when a change elsewhere (not in `result_modules`) changes what
    # the stage writes, so results stored before are not taken.
    results_version: int = 1
    # Modules besides the stage's own whose source decides its results; their digest is part of
    # every key, so a code change is never served results the old code computed.
    result_modules: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "metrics" in cls.__dict__:
            raise TypeError(f"{cls.__name__}: override `result_metrics`, not `metrics` (it adds the cache's)")

    def code_digest(self) -> str:
        """The digest of the source of the stage's module and its `result_modules`."""
        return source_digest((type(self).__module__, *self.result_modules))

    def base_scope(self) -> dict[str, Any]:
        """What every key of the stage holds: its kind, `results_version` and `code_digest`."""
        kind = getattr(getattr(self, "spec", None), "type", type(self).__name__)
        return {"stage": kind, "version": self.results_version, "code": self.code_digest()}

    def start_cache_counter(self, stage_name: str) -> None:
        """Start the counter (in the driver, before the stage's actors are built)."""
        self.cache_counter = CacheCounter(stage_name)

    def cache_metrics(self) -> dict[str, Any]:
        """The stage's cache hits and computed rows, or {} before `apply`."""
        return self.cache_counter.metrics() if self.cache_counter is not None else {}

    def result_metrics(self, result: ray.data.Dataset) -> dict[str, Any]:
        """The stage's own metrics over its output (none by default)."""
        return {}

    def metrics(self, result: ray.data.Dataset) -> dict[str, Any]:
        """`result_metrics`, and the rows taken from the cache and computed (`stage_cache`)."""
        return self.result_metrics(result) | self.cache_metrics()


class StageCacheWorker(ABC):
    """A Ray actor of a `StageCacheUser` stage: each batch goes through the stage-result cache,
    and only the rows not cached reach `process_rows`."""

    stage: Any  # the stage: a StageCacheUser with name, reads, writes and cache_inputs

    def cache_scope(self) -> Mapping[str, Any]:
        """The stage's scope as this worker sees it (a sandbox stage adds its sandbox)."""
        return self.stage.cache_scope()

    @functools.cached_property
    def stage_cache(self) -> StageResultCache | None:
        """The stage-result cache under the stage's scope, or None when caching is off."""
        stage = self.stage
        if not stage.stage_cache_uri:
            return None
        return StageResultCache(stage.stage_cache_uri, self.cache_scope(), stage.writes)

    def __call__(self, table: pa.Table) -> pa.Table:
        from datagen.stages.base import process_table  # not at import: datagen.stages imports this

        stage = self.stage

        def process(rows: list[Row]) -> list[RowResult]:
            return process_with_cache(stage, self.stage_cache, rows, self.process_rows, stage.cache_inputs)

        return process_table(table, stage.name, stage.reads, stage.writes, process)

    @abstractmethod
    def process_rows(self, rows: list[Row]) -> list[RowResult]:
        """One result per row of the batch: the row's written values (`Uncached` when they must
        not be stored), or the exception that failed it."""


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
