"""Stages run by Ray actors that each hold one sandbox: `execute`, `sql_reference`, `synthesize_tests`.

A `SandboxStage` maps its rows in a pool of `spec.actors` Ray actors; each actor (a
`SandboxWorker`) opens one sandbox (a warm pool of containers) when it starts and closes it when
Ray Data shuts the actor down, or else when its process exits. The actors reserve only
`LIGHT_TASK_CPUS` each: the programs run in the containers, not in the actor.

Each batch goes through the stage-result cache first (datagen/stage_cache.py): a row whose
result a run before stored (same stage code and settings, sandbox identity and inputs) is not
executed again; the stage's metrics report the hits (`stage_cache`). A result with a timed-out
run is not stored (the worker returns it as `Uncached`).
"""

from __future__ import annotations

import atexit
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import Field

from datagen.stage_cache import StageCacheUser, StageCacheWorker, result_inputs
from datagen.stages.base import (
    LIGHT_TASK_CPUS,
    BuildContext,
    Row,
    RowResult,
    Stage,
    StageSpec,
    run_rows_isolated,
)
from sandbox.config import SandboxConfig

if TYPE_CHECKING:
    import ray.data

    from sandbox.execution import Sandbox
    from sandbox.verdict import Verdict

# The code a sandbox verdict depends on besides the stage's own module: how a program is
# extracted, run and judged (packages: every file, the harnesses shipped into the sandbox too).
SANDBOX_RESULT_MODULES = (
    "datagen.stages.sandbox_worker",
    "sandbox.verify",
    "sandbox.verdict",
    "sandbox.extract",
    "sandbox.execution",
    "sandbox.server",
    "sandbox.languages",
    "sandbox.harness",
)

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
    # Spec fields that only name the columns the stage reads: out of its cache key too (the
    # values read are the key's inputs), so renaming a column keeps its results.
    read_fields: ClassVar[frozenset[str]] = frozenset()
    result_modules = SANDBOX_RESULT_MODULES

    def __init__(self, spec: SandboxSpecT, context: BuildContext | None = None) -> None:
        super().__init__(spec, context)
        self.threads = spec.sandbox.pool_size  # what each actor runs at once; a stage may change it
        self.stage_cache_uri = (context or BuildContext()).stage_cache_uri

    def result_settings(self) -> dict[str, Any]:
        """The spec's fields that decide what the stage writes (a stage may resolve defaults)."""
        return self.spec.model_dump(exclude=set(self.runtime_fields | self.read_fields))

    def cache_scope(self, sandbox: Sandbox) -> dict[str, Any]:
        """The stage kind, code and settings its results depend on, with the sandbox running them."""
        return self.base_scope() | {
            "spec": self.result_settings(),
            "sandbox": sandbox_identity(sandbox, self.spec.sandbox),
        }

    def cache_inputs(self, row: Row) -> Any:
        """What a row's result depends on: the values the stage reads."""
        return [result_inputs(row[column]) for column in self.reads]

    @property
    def actor_cpus(self) -> float:
        return LIGHT_TASK_CPUS  # the programs run in containers

    @property
    def concurrency(self) -> int:
        return self.spec.actors

    def apply(self, ds: ray.data.Dataset) -> ray.data.Dataset:
        self.start_cache_counter(self.name)
        return self.map_actors(ds, self.worker, self.spec.batch_size)


class SandboxWorker(StageCacheWorker):
    """A Ray actor holding one sandbox and `stage.threads` threads; called with batches of rows
    (through the stage-result cache: `StageCacheWorker`)."""

    stage: SandboxStage[Any]

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

    def cache_scope(self) -> dict[str, Any]:
        return self.stage.cache_scope(self.sandbox)

    def map_rows(self, process: Callable[[Row], Row], rows: list[Row]) -> list[RowResult]:
        """`process` on each row, on the actor's threads; a row that raises gets its exception."""
        return list(self.pool.map(lambda row: run_rows_isolated([row], process)[0], rows))
