"""Stages run by Ray actors that each hold one sandbox: `execute`, `sql_reference`, `synthesize_tests`.

A `SandboxStage` maps its rows in a pool of `spec.actors` Ray actors; each actor (a
`SandboxWorker`) opens one sandbox (a warm pool of containers) when it starts and closes it when
Ray Data shuts the actor down, or else when its process exits. The actors reserve only
`LIGHT_TASK_CPUS` each: the programs run in the containers, not in the actor.

Each batch goes through the stage-result cache first (datagen/stage_cache.py): a row whose
result a run before stored (same stage settings, sandbox identity and inputs) is not executed
again; the stage's metrics report the hits (`stage_cache`).
"""

from __future__ import annotations

import atexit
import functools
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import Field

from datagen.stage_cache import StageCacheUser, StageResultCache, process_with_cache, result_inputs
from datagen.stages.base import (
    LIGHT_TASK_CPUS,
    BuildContext,
    Row,
    RowResult,
    Stage,
    StageSpec,
    process_table,
    run_rows_isolated,
)
from sandbox.config import SandboxConfig

if TYPE_CHECKING:
    import pyarrow as pa
    import ray.data

    from sandbox.execution import Sandbox
    from sandbox.verdict import Verdict

# Sandbox settings that decide how fast and how robustly it runs, not what a program's verdict
# is: left out of the stage-result cache's key (the backend and image are put in resolved).
SANDBOX_RUNTIME_FIELDS = frozenset(
    {"backend", "image", "bwrap_rootfs", "pool_size", "call_grace_s", "start_timeout_s", "acquire_timeout_s"}
)


def sandbox_identity(sandbox: Sandbox, config: SandboxConfig) -> dict[str, Any]:
    """What a verdict depends on about the sandbox that gave it: the backend that runs, the
    Docker image's id (a rebuilt image under the same tag is another sandbox) or bwrap's root,
    and the limits and container resources."""
    identity: dict[str, Any] = {"backend": sandbox.backend}
    identity |= config.model_dump(exclude=set(SANDBOX_RUNTIME_FIELDS))
    image = getattr(sandbox, "image", None)
    if sandbox.backend == "docker" and image:
        from sandbox.docker_backend import docker_client

        identity["image"] = docker_client().images.get(image).id
    else:
        identity["rootfs"] = config.bwrap_rootfs
    return identity


class ExecutionFailed(RuntimeError):
    """The sandbox itself failed for a row (retry-worthy); the row goes to the dead letters."""


def sandbox_failure(verdicts: list[Verdict]) -> ExecutionFailed | None:
    """The error of a row some of whose verdicts say the sandbox itself failed, else None."""
    broken = [v for v in verdicts if v.status == "sandbox_error"]
    return ExecutionFailed(f"sandbox error: {broken[0].message}") if broken else None


def check_sandbox(verdicts: list[Verdict]) -> None:
    """Fail the row if the sandbox itself failed for any of its verdicts.

    Raises:
        ExecutionFailed: with the first such verdict's message.
    """
    failure = sandbox_failure(verdicts)
    if failure is not None:
        raise failure


class SandboxStageSpec(StageSpec):
    """What every sandbox stage's spec has: the sandbox, the actors and the batch size."""

    sandbox: SandboxConfig = Field(
        default_factory=lambda: SandboxConfig(pool_size=2), description="The sandbox each actor opens."
    )
    actors: int = Field(1, ge=1, description="Ray actors, each with its own warm sandbox.")
    batch_size: int = Field(16, ge=1, description="Rows per batch sent to an actor.")


SandboxSpecT = TypeVar("SandboxSpecT", bound=SandboxStageSpec)


class SandboxStage(StageCacheUser, Stage[SandboxSpecT]):
    """A stage whose rows go, a batch at a time, to `spec.actors` actors of its `worker` class."""

    worker: ClassVar[type[SandboxWorker]]
    # Spec fields that decide how fast the stage runs, not what it writes: out of its cache key.
    runtime_fields: ClassVar[frozenset[str]] = frozenset({"name", "actors", "batch_size", "sandbox"})

    def __init__(self, spec: SandboxSpecT, context: BuildContext | None = None) -> None:
        super().__init__(spec, context)
        self.threads = spec.sandbox.pool_size  # what each actor runs at once; a stage may change it
        self.stage_cache_uri = (context or BuildContext()).stage_cache_uri

    def cache_scope(self, sandbox: Sandbox) -> dict[str, Any]:
        """The stage kind and settings its results depend on, with the sandbox that runs them."""
        return {
            "stage": self.spec.type,
            "version": self.results_version,
            "spec": self.spec.model_dump(exclude=set(self.runtime_fields)),
            "sandbox": sandbox_identity(sandbox, self.spec.sandbox),
        }

    def cache_inputs(self, row: Row) -> Any:
        """What a row's result depends on: the values the stage reads."""
        return [result_inputs(row[column]) for column in self.reads]

    def metrics(self, result: ray.data.Dataset) -> dict[str, Any]:
        """Rows taken from the stage-result cache and rows run (`stage_cache`)."""
        return self.cache_metrics()

    @property
    def actor_cpus(self) -> float:
        return LIGHT_TASK_CPUS  # the programs run in containers

    @property
    def concurrency(self) -> int:
        return self.spec.actors

    def apply(self, ds: ray.data.Dataset) -> ray.data.Dataset:
        self.start_cache_counter(self.name)
        return self.map_actors(ds, self.worker, self.spec.batch_size)


class SandboxWorker(ABC):
    """A Ray actor holding one sandbox and `stage.threads` threads; called with batches of rows."""

    def __init__(self, stage: SandboxStage[Any]) -> None:
        from sandbox import open_sandbox

        self.stage = stage
        self.sandbox = open_sandbox(stage.spec.sandbox)
        atexit.register(self.sandbox.close)
        self.pool = ThreadPoolExecutor(max_workers=max(1, stage.threads))

    def __del__(self) -> None:
        # Ray Data calls a UDF's __del__ when it shuts its actor down; stop the containers now
        # (a killed actor's containers are reaped by the next sandbox that starts).
        sandbox = getattr(self, "sandbox", None)
        if sandbox is not None:
            self.sandbox = None
            sandbox.close()

    @functools.cached_property
    def stage_cache(self) -> StageResultCache | None:
        """The stage-result cache under this stage's scope, or None when caching is off."""
        stage = self.stage
        if not stage.stage_cache_uri:
            return None
        return StageResultCache(stage.stage_cache_uri, stage.cache_scope(self.sandbox), stage.writes)

    def __call__(self, table: pa.Table) -> pa.Table:
        stage = self.stage

        def process(rows: list[Row]) -> list[RowResult]:
            return process_with_cache(stage, self.stage_cache, rows, self.process_rows, stage.cache_inputs)

        return process_table(table, stage.name, stage.reads, stage.writes, process)

    def map_rows(self, process: Callable[[Row], Row], rows: list[Row]) -> list[RowResult]:
        """`process` on each row, on the actor's threads; a row that raises gets its exception."""
        return list(self.pool.map(lambda row: run_rows_isolated([row], process)[0], rows))

    @abstractmethod
    def process_rows(self, rows: list[Row]) -> list[RowResult]:
        """One result per row of the batch: the row's written values, or the exception that failed it."""
