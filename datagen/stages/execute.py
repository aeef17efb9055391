"""Execute programs against their tests in the sandbox: the code expert's verification stage.

Each Ray actor of the stage opens one sandbox (a warm pool of containers) and runs its batch's
programs concurrently; a named Ray actor holds a semaphore that bounds the executions in flight
across every actor of the stage, on every node, so a big cluster cannot swamp the engines.

Two shapes of input:
- a text column (a program, or a completion with a fenced block): writes `verdict` (the
  status), `pass_rate` (the code row schema of DESIGN.md), `reward`, and `verdict_details`
  (per-test results, message, backend);
- a completions column (list of {text, ...}, the `generate` stage's output): writes
  `completion_verdicts` and one reward per completion in the scores column, for `best_of_n`.

A bad row (unknown language, no tests) gets an `invalid_input` verdict, not an error; a row
whose execution failed in the sandbox itself (`sandbox_error`) goes to the dead letters, so it
can be retried.

A row's verdicts are kept in the stage-result cache (datagen/stage_cache.py) as soon as its
batch finishes, keyed by the program (each completion's text), language, tests, the stage's code
and settings and the sandbox's identity: a re-run or resumed job does not execute it again. A
row with a `timeout` verdict is not kept (the load of the machine may be to blame), nor a
`sandbox_error` (a dead letter).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
from pydantic import Field, model_validator

from datagen.stage_cache import any_timeout, uncached_if
from datagen.stages.base import BuildContext, Row, RowResult
from datagen.stages.registry import register_stage
from datagen.stages.sandbox_worker import (
    SandboxStage,
    SandboxStageSpec,
    SandboxWorker,
    sandbox_failure,
)
from sandbox.verdict import VERDICT_TYPE, Verdict

if TYPE_CHECKING:
    import ray.data

SEMAPHORE_NAMESPACE = "assay"


class _Semaphore:
    """A counting semaphore shared by every actor of a stage (run as an async Ray actor)."""

    def __init__(self, permits: int) -> None:
        import asyncio

        self.permits = permits
        self._semaphore = asyncio.Semaphore(permits)
        self.in_flight = 0
        self.peak = 0

    async def acquire(self) -> None:
        await self._semaphore.acquire()
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)

    async def release(self) -> None:
        self.in_flight -= 1
        self._semaphore.release()

    async def stats(self) -> dict[str, int]:
        return {"permits": self.permits, "in_flight": self.in_flight, "peak": self.peak}


def semaphore(name: str, permits: int):  # noqa: ANN201 - a Ray actor handle
    """The cluster-wide semaphore called `name`, created with `permits` on first use."""
    import ray

    actor = ray.remote(num_cpus=0, max_concurrency=10_000)(_Semaphore)
    return actor.options(name=name, namespace=SEMAPHORE_NAMESPACE, get_if_exists=True).remote(permits)


def semaphore_name(stage_name: str) -> str:
    """The semaphore actor's name for a stage."""
    return f"assay-execute-{stage_name}"


class _ExecuteWorker(SandboxWorker):
    """A Ray actor holding one sandbox; its executions wait for the stage's semaphore."""

    stage: ExecuteStage

    def __init__(self, stage: ExecuteStage) -> None:
        super().__init__(stage)
        self.semaphore = semaphore(semaphore_name(stage.name), stage.spec.max_concurrency)

    @property
    def spec(self) -> ExecuteStageSpec:
        return self.stage.spec

    def _verify(self, language: Any, program: Any, tests: Any) -> Verdict:
        import ray

        from sandbox.verify import verify

        ray.get(self.semaphore.acquire.remote())
        try:
            return verify(
                self.sandbox, language, program, tests, extract=self.spec.extract,
                limits=self.spec.sandbox.limits.to_limits(),
            )  # fmt: skip
        finally:
            self.semaphore.release.remote()

    def process_rows(self, rows: list[Row]) -> list[RowResult]:
        stage, spec = self.stage, self.spec
        jobs: list[tuple[int, Any]] = []
        for index, row in enumerate(rows):
            programs = row[stage.program]
            if stage.list_input:
                for completion in programs or []:
                    text = completion.get("text") if isinstance(completion, dict) else completion
                    jobs.append((index, (row[spec.language], text, row[spec.tests])))
            else:
                jobs.append((index, (row[spec.language], programs, row[spec.tests])))
        verdicts = list(self.pool.map(lambda job: self._verify(*job[1]), jobs))
        per_row: list[list[Verdict]] = [[] for _ in rows]
        for (index, _), verdict in zip(jobs, verdicts, strict=True):
            per_row[index].append(verdict)
        results: list[RowResult] = []
        for row_verdicts in per_row:
            failure = sandbox_failure(row_verdicts)
            timed_out = any_timeout(v.status for v in row_verdicts)
            if failure is not None:
                results.append(failure)
            elif stage.list_input:
                result = {
                    "completion_verdicts": [v.to_row() for v in row_verdicts],
                    spec.scores: [v.reward for v in row_verdicts],
                }
                results.append(uncached_if(timed_out, result))
            else:
                (verdict,) = row_verdicts
                result = {
                    "verdict": verdict.status,
                    "verdict_details": verdict.to_row(),
                    "pass_rate": verdict.pass_rate,
                    "reward": verdict.reward,
                }
                results.append(uncached_if(timed_out, result))
        return results


class ExecuteStageSpec(SandboxStageSpec):
    """Run programs (or each completion's code block) against the row's tests in the sandbox."""

    type: Literal["execute"] = "execute"
    program: str | None = Field(
        None, description="Column with one program or completion per row; writes verdict, pass_rate, reward."
    )
    completions: str | None = Field(
        None, description="Column of completions (list of {text}); default `completions` without `program`."
    )
    language: str = Field("language", description="Column naming each row's language.")
    tests: str = Field("tests", description="Column with each row's tests, in the language's test format.")
    extract: bool = Field(True, description="Take the program from a fenced code block (False: bare code).")
    scores: str = Field("completion_scores", description="With `completions`: column for one reward each.")
    max_concurrency: int = Field(8, ge=1, description="Executions in flight at once across all actors.")
    threads: int | None = Field(
        None, ge=1, description="Executions each actor keeps in flight (default: its sandbox's pool size)."
    )

    @model_validator(mode="after")
    def _one_input(self) -> ExecuteStageSpec:
        if self.program is not None and self.completions is not None:
            raise ValueError("give `program` or `completions`, not both")
        if self.program is None and self.completions is None:
            self.completions = "completions"
        return self


@register_stage
class ExecuteStage(SandboxStage[ExecuteStageSpec]):
    """Run each row's program (or each completion) against the row's tests in the sandbox.

    With `program`, a text column (a program, or a completion with a fenced block) gets a
    verdict; with `completions`, every completion of a list gets one, and a reward in `scores`.
    """

    spec_class = ExecuteStageSpec
    worker = _ExecuteWorker
    runtime_fields = SandboxStage.runtime_fields | {"max_concurrency", "threads"}
    # `program` vs `completions` changes the shape, which the written columns (in the key) show.
    read_fields = frozenset({"program", "completions", "language", "tests"})

    def __init__(self, spec: ExecuteStageSpec, context: BuildContext | None = None) -> None:
        super().__init__(spec, context)
        self.list_input = spec.program is None
        self.program = spec.program or spec.completions or "completions"
        self.threads = spec.threads or self.threads
        self.semaphore: Any = None
        self.reads = (self.program, spec.language, spec.tests)
        if self.list_input:
            self.writes = {"completion_verdicts": pa.list_(VERDICT_TYPE), spec.scores: pa.list_(pa.float64())}
        else:
            self.writes = {
                "verdict": pa.string(),
                "verdict_details": VERDICT_TYPE,
                "pass_rate": pa.float64(),
                "reward": pa.float64(),
            }

    def concurrency_stats(self) -> dict[str, int]:
        """Permits, executions in flight now, and the most ever in flight at once (after `apply`)."""
        import ray

        return ray.get(self.semaphore.stats.remote())

    def apply(self, ds: ray.data.Dataset) -> ray.data.Dataset:
        # Created before any actor asks, and held here: a named actor dies with its last handle.
        self.semaphore = semaphore(semaphore_name(self.name), self.spec.max_concurrency)
        return super().apply(ds)  # the programs run in containers, bounded by the semaphore
