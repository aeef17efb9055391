"""Run a pipeline spec as a job: validate everything, run the stages on Ray Data, register the
outputs and the dead letters with lineage."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from assay.errors import AssayError
from datagen.job_console import (
    CountRows,
    ProgressSink,
    forward_progress,
    keep_ray_logs,
    local_ray_env,
    quiet_library_warnings,
    quiet_ray_console,
    source_rows,
    start_counter,
)
from datagen.outputs import check_output_rows, dead_letter_rows, finished_rows, project_for_kind
from datagen.sources import Source, load_source
from datagen.spec import LoadedSpec
from datagen.stages import Stage, build_stages, check_columns
from datagen.stages.base import LIGHT_TASK_CPUS
from datagen.stages.generate import GenerateStage
from datasets_registry import Lineage, Registry, canonical_hash
from datasets_registry.kinds import REQUIRED_COLUMNS
from model_store import ModelStore, ResolvedModel

if TYPE_CHECKING:
    import ray.data


@dataclass
class OutputReport:
    """One dataset version the job registered."""

    dataset: str
    kind: str
    version: int
    rows: int

    @property
    def ref(self) -> str:
        return f"{self.dataset}@{self.version}"


@dataclass
class JobReport:
    """What a job did."""

    job_id: str
    pipeline: str
    rows_in: int = 0
    rows_failed: int = 0
    outputs: list[OutputReport] = field(default_factory=list)
    dead_letter: OutputReport | None = None
    skipped: list[str] = field(default_factory=list)  # outputs with no rows: nothing registered
    usage: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    wall_s: float = 0.0
    log_dir: Path | None = None  # Ray's full logs of the job (the session's logs folder, copied)
    stage_metrics: dict[str, dict] = field(default_factory=dict)  # from stages with a `metrics()`


@dataclass
class PreparedJob:
    """A job whose inputs are all checked: nothing has run and nothing is written yet."""

    loaded: LoadedSpec
    stages: list[Stage]
    source: Source
    job_id: str
    # Further lineage sources (a retry of dead letters names the version it recovers rows for).
    extra_sources: list[str] = field(default_factory=list)


def cache_uri(registry: Registry) -> str:
    """Where the registry keeps its LLM-call cache."""
    return f"{registry.root.rstrip('/')}/_cache/llm_calls.lance"


def prepare_job(
    loaded: LoadedSpec, registry: Registry, store: ModelStore, *, use_cache: bool = True
) -> PreparedJob:
    """Resolve templates, models and the source, and check every column, before any work.

    Raises:
        AssayError: naming the file and field of the first problem.
    """
    spec = loaded.spec
    stages = build_stages(loaded, store, cache_uri(registry) if use_cache else None)
    path = loaded.resolve(spec.source.path) if spec.source.path else None
    source = load_source(path, spec.source.dataset, spec.source.limit, registry)
    available = check_columns(stages, [*source.columns, "id"], str(loaded.path))
    for index, output in enumerate(spec.outputs):
        missing = [c for c in REQUIRED_COLUMNS[output.kind] if c not in available]
        if missing:
            raise AssayError(
                f"{loaded.path}: outputs.{index}: kind {output.kind!r} needs column(s) "
                f"{', '.join(missing)}, which no stage writes"
            )
    generators = [stage for stage in stages if isinstance(stage, GenerateStage)]
    if any(o.kind == "preference" for o in spec.outputs) and any(g.sampling.n < 2 for g in generators):
        raise AssayError(f"{loaded.path}: a preference output needs sampling.n >= 2 to have pairs")
    for stage in generators:
        for teacher in stage.teachers:
            where = f"{loaded.path}: stage {stage.name!r}, teacher {teacher.name!r}"
            if teacher.engine.backend == "vllm":
                from datagen.engines.vllm_engine import preflight as vllm_preflight

                vllm_preflight(teacher.engine, where)
            if teacher.model is not None:
                check_chat_template(teacher.model, where)
            elif teacher.engine.backend == "openai":
                from datagen.engines.openai_engine import preflight

                preflight(teacher.engine)
    job_id = f"{spec.name}-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    return PreparedJob(loaded, stages, source, job_id)


def check_chat_template(model: ResolvedModel, where: str) -> None:
    """Fail before Ray starts if the model's tokenizer cannot render chat prompts."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model.path, **model.load_kwargs())
    except (OSError, ValueError) as err:
        raise AssayError(f"{where}: cannot load the tokenizer of {model.ref!r}: {err}") from err
    if tokenizer.chat_template is None:
        raise AssayError(f"{where}: model {model.ref!r} has no chat template in its tokenizer")


# Ray Data reads a registered dataset in read tasks of one CPU each (Ray's default for a read);
# every other task of a job asks for LIGHT_TASK_CPUS.
READ_TASK_CPUS = 1.0


def check_actor_cpus(stages: list[Stage], source: Source) -> None:
    """Refuse a plan whose actor pools leave Ray too few CPUs to run one of the job's tasks.

    Ray Data keeps every stage's actor pool up at once (rows stream through all the stages), so
    the CPUs the pools reserve (`Stage.reserved_cpus`) add up; what is left must hold one task
    of the largest kind: a read of a dataset source (one CPU), else a light stage's task. With
    less, Ray Data waits for CPUs forever instead of failing.

    Raises:
        AssayError: in one line, naming each stage with actors and the CPUs its pool reserves.
    """
    import ray

    if source.version is not None:
        keep_free, task = READ_TASK_CPUS, "a read of the source dataset"
    else:
        keep_free, task = LIGHT_TASK_CPUS, "a light stage's task"
    wanted = {stage.name: stage.reserved_cpus for stage in stages if stage.reserved_cpus > 0}
    available = ray.cluster_resources().get("CPU", 0.0)
    total = sum(wanted.values())
    if wanted and total + keep_free > available + 1e-9:  # a tolerance for sums of fractions
        detail = ", ".join(f"{name}: {cpus:g}" for name, cpus in wanted.items())
        raise AssayError(
            f"the stages' actors reserve {total:g} CPUs ({detail}) but Ray has {available:g}, and "
            f"{task} needs {keep_free:g} of them free, or the job waits forever; lower the stages' "
            "num_cpus or concurrency (engine.num_cpus, a score stage's num_cpus, a sandbox stage's "
            "actors) or give Ray more CPUs (ray.num_cpus)"
        )


def start_ray(address: str | None, num_cpus: int | None) -> None:
    """Join a cluster at `address`, or start Ray in this process (never a stale cluster file)."""
    import ray

    if ray.is_initialized():
        return
    quiet_library_warnings()
    if not address:
        local_ray_env()
    else:
        join_cluster_auth()
    try:
        ray.init(
            address=address or "local",
            num_cpus=None if address else num_cpus,
            include_dashboard=False,
            log_to_driver=False,
            logging_level="WARNING",
        )
    except Exception as err:
        raise_connect_error(address, err)
        raise


def join_cluster_auth() -> None:
    """Use the cluster's token authentication when a token is available (datagen.jobs.ray_jobs)."""
    from datagen.jobs.ray_jobs import enable_token_auth

    enable_token_auth()


def raise_connect_error(address: str | None, err: Exception) -> None:
    """An authentication failure joining a cluster becomes one line saying what to set."""
    from datagen.jobs.ray_jobs import explain_connect_error

    explained = explain_connect_error(address, err) if address else None
    if explained is not None:
        raise explained from err


def run_job(
    job: PreparedJob,
    registry: Registry,
    *,
    address: str | None = None,
    log: Callable[[str], None] = print,
    on_registered: Callable[[str], None] | None = None,
    progress: ProgressSink | None = None,
) -> JobReport:
    """Run a prepared job and register its outputs; failed rows go to the dead-letter dataset.

    The outputs land together (`register_together`); `on_registered` is called with each
    version's ref as it is written (still hidden until the last one is). With `progress`, one
    task per stage is advanced as rows finish it (rows, completions, completion tokens). Ray's
    logs are copied to `$ASSAY_HOME/logs/JOB_ID/ray` when the job ends (`JobReport.log_dir`).
    """
    spec = job.loaded.spec
    started = time.monotonic()
    start_ray(address or spec.ray.address, spec.ray.num_cpus)
    quiet_ray_console()
    try:
        report = _run(job, registry, log, on_registered, progress)
    finally:
        log_dir = keep_ray_logs(job.job_id)
    report.log_dir = log_dir
    report.wall_s = time.monotonic() - started
    return report


def _run(
    job: PreparedJob,
    registry: Registry,
    log: Callable[[str], None],
    on_registered: Callable[[str], None] | None,
    progress: ProgressSink | None,
) -> JobReport:
    spec = job.loaded.spec
    check_actor_cpus(job.stages, job.source)
    log(f"job {job.job_id}: {len(job.stages)} stages over {job.source.identity}")
    batch_sizes = [
        t.engine.batch_size for s in job.stages if isinstance(s, GenerateStage) for t in s.teachers
    ]
    ds = job.source.to_ray(block_rows=min(batch_sizes, default=32))
    counter = start_counter() if progress is not None else None
    for stage in job.stages:
        ds = stage.apply(ds)
        if counter is not None:
            completions = stage.output if isinstance(stage, GenerateStage) else None
            ds = _map(ds, CountRows(counter, stage.name, completions))
    for output in spec.outputs:  # a row its output kind would refuse becomes a dead letter
        ds = _map(ds, lambda t, o=output: check_output_rows(t, o.kind, o.dataset))
    ds.context.execution_no_progress_timeout_s = spec.ray.stall_timeout_s
    if counter is None or progress is None:
        result = ds.materialize()
    else:
        with forward_progress(counter, progress, [s.name for s in job.stages], source_rows(job.source)):
            result = ds.materialize()
    report = JobReport(job_id=job.job_id, pipeline=spec.name)
    report.rows_in = result.count()
    report.usage = _usage(result, job.stages)
    # A stage may summarise the finished rows (e.g. arbitrage's win share): kept in lineage, logged.
    for stage in job.stages:
        if callable(summarise := getattr(stage, "metrics", None)) and (metrics := summarise(result)):
            report.stage_metrics[stage.name] = metrics
            log(f"{stage.name}: {json.dumps(metrics, sort_keys=True)}")
    lineage = Lineage(
        job_id=job.job_id,
        pipeline=spec.name,
        spec=job.loaded.raw,
        spec_hash=canonical_hash(job.loaded.raw),
        models=sorted({m for stage in job.stages for m in stage.models}),
        sources=[job.source.identity, *job.extra_sources],
        metrics={"rows_in": report.rows_in, "usage": report.usage}
        | ({"stages": report.stage_metrics} if report.stage_metrics else {}),
    )
    with register_together(registry, job.job_id):
        _register(job, registry, result, lineage, report, on_registered)
    return report


@contextlib.contextmanager
def register_together(registry: Registry, job_id: str) -> Iterator[None]:
    """Make the versions written inside visible together: a job record opened before the
    first and committed after the last (readers and gc honour it). A failure inside leaves
    them hidden and aborted; a killed process leaves them hidden until gc or a re-run."""
    registry.begin_job(job_id)
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):  # the original error is the one to report
            registry.abort_job(job_id)
        raise
    registry.commit_job(job_id)


def _register(
    job: PreparedJob,
    registry: Registry,
    result: ray.data.Dataset,
    lineage: Lineage,
    report: JobReport,
    on_registered: Callable[[str], None] | None,
) -> None:
    spec = job.loaded.spec
    notify = on_registered or (lambda _: None)
    # Dead letters first: if an output write fails, the failed rows are already kept.
    dead = _map(result, lambda t: dead_letter_rows(t, job.job_id)).materialize()
    report.rows_failed = dead.count()
    if report.rows_failed:
        version = registry.write(
            spec.dead_letter_dataset, dead, kind="generic", lineage=lineage, mode="append"
        )
        report.dead_letter = OutputReport(version.name, "generic", version.version, report.rows_failed)
        notify(version.ref)
    finished = _map(result, finished_rows)
    for output in spec.outputs:
        rows = _map(finished, lambda t, kind=output.kind: project_for_kind(t, kind)).materialize()
        if rows.count() == 0:
            report.skipped.append(output.dataset)
            continue
        version = registry.write(output.dataset, rows, kind=output.kind, lineage=lineage, mode=output.mode)
        report.outputs.append(OutputReport(output.dataset, output.kind, version.version, version.num_rows))
        notify(version.ref)


def _map(ds: ray.data.Dataset, fn: Callable[[pa.Table], pa.Table]) -> ray.data.Dataset:
    return ds.map_batches(fn, batch_format="pyarrow", num_cpus=LIGHT_TASK_CPUS)


def _usage(result: ray.data.Dataset, stages: list[Stage]) -> dict[str, dict[str, dict[str, float]]]:
    """Per generate stage and model: completions generated, cache hits, tokens, time, tokens/s.

    Tokens and time count only completions generated by this job; cached ones are hits.
    """
    import polars as pl

    usage: dict[str, dict[str, dict[str, float]]] = {}
    for stage in stages:
        if not isinstance(stage, GenerateStage):
            continue
        frames = []
        for batch in result.select_columns([stage.output]).iter_batches(batch_format="pyarrow"):
            flat = pc.list_flatten(batch[stage.output])
            frames.append(pl.from_arrow(pa.Table.from_struct_array(flat)) if len(flat) else None)
        frames = [f for f in frames if f is not None]
        if not frames:
            usage[stage.name] = {}
            continue
        totals = (
            pl.concat(frames)
            .group_by("model")
            .agg(
                completions=(~pl.col("cached")).sum(),
                cache_hits=pl.col("cached").sum(),
                prompt_tokens=pl.col("prompt_tokens").filter(~pl.col("cached")).sum(),
                completion_tokens=pl.col("completion_tokens").filter(~pl.col("cached")).sum(),
                generate_s=pl.col("latency_s").filter(~pl.col("cached")).sum(),
            )
            .sort("model")
        )
        usage[stage.name] = {
            row.pop("model"): row
            | {
                "tokens_per_s": round(row["completion_tokens"] / row["generate_s"], 1)
                if row["generate_s"]
                else 0.0
            }
            for row in totals.to_dicts()
        }
    return usage
