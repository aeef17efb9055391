"""The stage contract: a spec, a class built from it, the columns it reads and writes.

A stage module owns its spec model (a `StageSpec` with `type: Literal[...]`, every default
there and only there) and its stage class, built from the spec by one constructor
`Stage(spec, context)`; `@register_stage` (datagen/stages/registry.py) makes its `type` valid in
pipeline specs. See docs/architecture.md, "Adding a stage".

Every row carries error columns. A row whose processing raises gets the stage name, the error
and a JSON copy of itself as it was at that moment; later stages pass it through untouched,
and the job sends it to the dead-letter dataset. So one bad row never kills a job.
"""

from __future__ import annotations

import json
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from assay.config import StrictModel
from assay.errors import AssayError

if TYPE_CHECKING:
    import ray.data

    from model_store import ModelStore, ResolvedModel

ERROR_COLUMN = "_error"
ERROR_STAGE_COLUMN = "_error_stage"
FAILED_ROW_COLUMN = "_failed_row"  # the row as it was when it failed, as JSON, for retry
ERROR_COLUMNS = {ERROR_COLUMN: pa.string(), ERROR_STAGE_COLUMN: pa.string(), FAILED_ROW_COLUMN: pa.string()}

# Ray CPUs for cheap per-row work: whole-CPU tasks beside model actors stall a 2-core machine.
LIGHT_TASK_CPUS = 0.1

Row = dict[str, Any]
RowResult = Row | Exception


TYPE_DESCRIPTION = "The stage type; it selects the stage."


class StageSpec(StrictModel):
    """What every stage spec has. A stage's own spec narrows `type` to one literal."""

    type: str = Field(description=TYPE_DESCRIPTION)
    name: str | None = Field(None, description="Stage name in reports and dead letters; default INDEX-TYPE.")

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        # A subclass narrows `type` to its literal, which drops the field's description.
        field = cls.model_fields["type"]
        field.description = field.description or TYPE_DESCRIPTION


@dataclass(frozen=True)
class BuildContext:
    """What building a stage may need besides its spec: where the spec file is (relative paths
    and error messages), the model store, the LLM-call cache, and the stage's index."""

    spec_path: Path = Path("pipeline.yaml")
    store: ModelStore | None = None
    cache_uri: str | None = None
    index: int = 0

    @property
    def stage_cache_uri(self) -> str | None:
        """The stage-result cache (datagen/stage_cache.py), beside the LLM-call cache; None
        when caching is off."""
        from datagen.stage_cache import stage_results_uri

        return stage_results_uri(self.cache_uri) if self.cache_uri else None

    def resolve(self, relative: str) -> Path:
        """A path in the spec, relative to the spec file's folder."""
        path = Path(relative).expanduser()
        return path if path.is_absolute() else (self.spec_path.parent / path).resolve()

    def field(self, name: str) -> str:
        """`FILE: stages.INDEX.NAME`, for messages about one of the stage's fields."""
        return f"{self.spec_path}: stages.{self.index}.{name}"

    def resolve_model(self, ref: str, field: str) -> ResolvedModel:
        """A model named in the spec: a stored name, a .gguf file or an HF folder (relative to the
        spec file), resolved now so that a missing one fails before any work.

        Raises:
            AssayError: naming the file and field.
        """
        from assay.settings import model_store_dir
        from model_store import ModelStore, ModelStoreError

        store = self.store or ModelStore(model_store_dir())
        if not store.has(ref) and ("/" in ref or ref.endswith(".gguf")):
            ref = str(self.resolve(ref))
        try:
            return store.resolve(ref)
        except ModelStoreError as err:
            raise AssayError(f"{self.field(field)}: {err}") from err


SpecT = TypeVar("SpecT", bound=StageSpec)


class Stage(ABC, Generic[SpecT]):
    """A pipeline step over a Ray Dataset, built from its spec.

    Subclasses set `spec_class`, and in their constructor `reads` (input columns) and `writes`
    (output columns and their Arrow types), which the job checks against the source columns
    before anything runs.
    """

    spec_class: ClassVar[type[StageSpec]]
    reads: tuple[str, ...] = ()
    writes: dict[str, pa.DataType] = {}

    def __init__(self, spec: SpecT, context: BuildContext | None = None) -> None:
        self.spec = spec
        self.name = spec.name or f"{(context or BuildContext()).index}-{spec.type}"

    @property
    def models(self) -> list[str]:
        """Identities of the models this stage runs (for lineage)."""
        return []

    @property
    def concurrency(self) -> int:
        """Ray actors the stage keeps for the whole job (0: it runs in short Ray tasks)."""
        return 0

    @property
    def actor_cpus(self) -> float:
        """CPUs each of the stage's actors reserves."""
        return 0.0

    @property
    def reserved_cpus(self) -> float:
        """CPUs the stage's actor pool holds while the job runs; Ray Data runs every stage's pool
        at once, so the job checks their sum against the cluster (datagen.job.check_actor_cpus).
        A stage with actors overrides `concurrency` and `actor_cpus` and uses them in `apply`."""
        return self.concurrency * self.actor_cpus

    def map_actors(
        self, ds: ray.data.Dataset, worker: type, batch_size: int, **options: Any
    ) -> ray.data.Dataset:
        """Map `ds`, in batches of `batch_size` rows, through `concurrency` actors of `worker`
        (each built as `worker(self)`, reserving `actor_cpus`); `options` go to `map_batches`."""
        import ray.data

        with warnings.catch_warnings():
            # Ray 2.60 deprecates extra remote args but has no named parameter for max_restarts.
            warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
            return ds.map_batches(
                worker,
                fn_constructor_args=(self,),
                batch_size=batch_size,
                batch_format="pyarrow",
                compute=ray.data.ActorPoolStrategy(size=self.concurrency),
                num_cpus=self.actor_cpus,
                udf_modifying_row_count=False,
                # No restarts, as in the generate stage: an actor that died fails the job with its
                # error, and Ray logs on every job that restarting one whose constructor
                # arguments sit in the object store can fail.
                max_restarts=0,
                **options,
            )

    @abstractmethod
    def apply(self, ds: ray.data.Dataset) -> ray.data.Dataset:
        """Add this stage to the dataset's plan."""


def finished_rows(result: ray.data.Dataset, columns: Sequence[str]) -> list[Row]:
    """The rows of a job's result that no stage failed, with `columns` only (for stage metrics)."""
    rows: list[Row] = []
    for batch in result.select_columns([*columns, ERROR_COLUMN]).iter_batches(batch_format="pyarrow"):
        rows += [row for row in batch.to_pylist() if row[ERROR_COLUMN] is None]
    return rows


def run_rows_isolated(rows: Sequence[Row], process: Callable[[Row], Row]) -> list[RowResult]:
    """Apply `process` to each row, capturing an exception as that row's result."""
    results: list[RowResult] = []
    for row in rows:
        try:
            results.append(process(row))
        except Exception as err:  # noqa: BLE001 - any row failure becomes a dead letter
            results.append(err)
    return results


def process_table(
    table: pa.Table,
    stage_name: str,
    reads: Sequence[str],
    writes: dict[str, pa.DataType],
    process_rows: Callable[[list[Row]], list[RowResult]],
) -> pa.Table:
    """Run `process_rows` on the rows of `table` that have no error yet and add its columns.

    Input columns keep their Arrow types; written columns get the declared types, so every
    block of a dataset has the same schema. A result that is an exception, or whose values do
    not fit the declared types, marks its row failed and records the row as it was then.
    Rows that are not processed keep an existing column's value where the types agree.
    """
    errors = table[ERROR_COLUMN].to_pylist()
    pending = [i for i, error in enumerate(errors) if error is None]
    rows = table.select(list(reads)).take(pending).to_pylist() if pending else []
    results = process_rows(rows) if rows else []
    failures: dict[int, str] = {}
    columns: dict[str, list[Any]] = {name: [None] * table.num_rows for name in writes}
    for index, result in zip(pending, results, strict=True):
        if isinstance(result, Exception):
            failures[index] = f"{type(result).__name__}: {result}"
            continue
        try:
            values = {name: pa.scalar(result[name], type=arrow_type) for name, arrow_type in writes.items()}
        except (KeyError, pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as err:
            failures[index] = f"{type(err).__name__}: output does not fit the stage's columns: {err}"
            continue
        for name, value in values.items():
            columns[name][index] = value
    out = table
    for name, arrow_type in writes.items():
        new = pa.array([v.as_py() if v is not None else None for v in columns[name]], type=arrow_type)
        if name in out.column_names and out.schema.field(name).type == arrow_type:
            processed = pa.array([v is not None for v in columns[name]])
            new = pc.if_else(processed, new, out[name].combine_chunks())
        out = set_column(out, name, new)
    return mark_failed(out, failures, stage_name)


def mark_failed(table: pa.Table, failures: dict[int, str], stage_name: str) -> pa.Table:
    """Record `failures` (row index -> error) with the stage and each failed row as JSON."""
    if not failures:
        return table
    columns = {name: table[name].to_pylist() for name in ERROR_COLUMNS}
    payload = table.drop_columns(list(ERROR_COLUMNS))
    for index, error in failures.items():
        columns[ERROR_COLUMN][index] = error
        columns[ERROR_STAGE_COLUMN][index] = stage_name
        columns[FAILED_ROW_COLUMN][index] = json.dumps(
            payload.slice(index, 1).to_pylist()[0], ensure_ascii=False, default=str
        )
    for name, arrow_type in ERROR_COLUMNS.items():
        table = set_column(table, name, pa.array(columns[name], type=arrow_type))
    return table


def set_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    """Replace column `name`, or append it if absent."""
    index = table.schema.get_field_index(name)
    if index >= 0:
        return table.set_column(index, name, values)
    return table.append_column(name, values)


class RowStage(Stage[SpecT]):
    """A stage that maps each row independently in cheap Ray tasks."""

    @abstractmethod
    def process_row(self, row: Row) -> Row:
        """Return the values of `writes` for one row; raise to fail the row."""

    def apply(self, ds: ray.data.Dataset) -> ray.data.Dataset:
        name, reads, writes, process = self.name, self.reads, self.writes, self.process_row

        def run(table: pa.Table) -> pa.Table:
            return process_table(table, name, reads, writes, lambda rows: run_rows_isolated(rows, process))

        return ds.map_batches(
            run, batch_format="pyarrow", num_cpus=LIGHT_TASK_CPUS, udf_modifying_row_count=False
        )
