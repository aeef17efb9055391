"""A teacher pool for multilingual arbitrage: every teacher whose route covers a row samples it.

Unlike `generate` with `teachers`, a teacher that fails on a row does not fail the row: its
completions are missing, the others go on, and the failure is recorded in `teacher_errors`.
A row fails (dead letter) only when no teacher's route covers it (the message names the
uncovered value, e.g. the language) or when every routed teacher failed. Each teacher may set
its own system message (one model under two system prompts is two teachers), and every
completion is attributed to its teacher by name in `completion_teachers`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
from pydantic import Field, model_validator

from datagen.engines.base import COMPLETIONS_TYPE
from datagen.engines.config import OpenAIEngineConfig, SamplingConfig
from datagen.stages.base import BuildContext, Row, RowResult, process_table
from datagen.stages.generate import (
    GenerateStage,
    GenerateStageSpec,
    Teacher,
    TeacherSpec,
    _GenerateWorker,
)
from datagen.stages.registry import register_stage

if TYPE_CHECKING:
    import ray.data

TEACHER_ERROR_TYPE = pa.struct([("teacher", pa.string()), ("error", pa.string())])


class PoolTeacherSpec(TeacherSpec):
    """One teacher of a pool: an engine, a route, and optionally its own system message."""

    system: str | None = Field(
        None, description="System message for this teacher's conversations (replaces any system turn)."
    )


class TeacherPoolStageSpec(GenerateStageSpec):
    """Sample every row with every teacher whose route covers it; a failing teacher is skipped."""

    type: Literal["teacher_pool"] = "teacher_pool"  # type: ignore[assignment]
    teachers: list[PoolTeacherSpec] = Field(  # type: ignore[assignment]
        min_length=1, description="The pool; names must be unique (default name: the model)."
    )
    teacher_output: str = Field(
        "completion_teachers", description="Column for the teacher of each completion."
    )
    errors_output: str = Field(
        "teacher_errors", description="Column for the teachers that failed on the row."
    )

    @model_validator(mode="after")
    def _unique_names(self) -> TeacherPoolStageSpec:
        names = [t.name or t.engine.model for t in self.teachers]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"teacher names must be unique; repeated: {', '.join(repeated)}")
        return self


def with_system(conversation: list[dict[str, str]], system: str | None) -> list[dict[str, str]]:
    """The conversation with `system` as its only system turn (unchanged when None)."""
    if system is None:
        return conversation
    return [{"role": "system", "content": system}, *(m for m in conversation if m["role"] != "system")]


@register_stage
class TeacherPoolStage(GenerateStage):
    """Every routed teacher samples `sampling.n` completions; teachers are named per completion."""

    spec_class = TeacherPoolStageSpec

    def __init__(self, spec: TeacherPoolStageSpec, context: BuildContext | None = None) -> None:  # type: ignore[override]
        super().__init__(spec, context)
        self.pool_spec = spec  # the teachers (PoolTeacherSpec) were resolved by GenerateStage
        self.writes = {
            spec.output: COMPLETIONS_TYPE,
            spec.teacher_output: pa.list_(pa.string()),
            spec.errors_output: pa.list_(TEACHER_ERROR_TYPE),
        }

    def apply(self, ds: ray.data.Dataset) -> ray.data.Dataset:
        import ray.data

        key_names = {t.engine.api_key_env for t in self.teachers if isinstance(t.engine, OpenAIEngineConfig)}
        keys = {name: os.environ[name] for name in key_names if name and name in os.environ}
        spec = self.pool_spec
        return ds.map_batches(
            _PoolWorker,
            fn_constructor_args=(self.name, self.teachers, self.sampling, self.input, self.output),
            fn_constructor_kwargs={
                "cache_uri": self.cache_uri,
                "systems": [t.system for t in spec.teachers],
                "teacher_output": spec.teacher_output,
                "errors_output": spec.errors_output,
            },
            batch_size=min(teacher.engine.batch_size for teacher in self.teachers),
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=self.concurrency),
            num_cpus=self.actor_cpus,
            **({"num_gpus": self.actor_gpus} if self.actor_gpus else {}),
            udf_modifying_row_count=False,
            **({"runtime_env": {"env_vars": keys}} if keys else {}),
        )

    def metrics(self, result: ray.data.Dataset) -> dict[str, Any]:
        """Per teacher: completions kept and rows it failed on (its completions missing there)."""
        spec = self.pool_spec
        completions: dict[str, int] = {t.name: 0 for t in self.teachers}
        failures: dict[str, int] = {t.name: 0 for t in self.teachers}
        columns = [spec.teacher_output, spec.errors_output]
        for batch in result.select_columns(columns).iter_batches(batch_format="pyarrow"):
            for row in batch.to_pylist():
                for name in row[spec.teacher_output] or []:
                    completions[name] += 1
                for error in row[spec.errors_output] or []:
                    failures[error["teacher"]] += 1
        return {"completions": completions, "teacher_failed_rows": failures}


class _PoolWorker(_GenerateWorker):
    """A Ray actor holding every teacher's engine; a teacher's failure stays with that teacher."""

    def __init__(
        self,
        stage_name: str,
        teachers: list[Teacher],
        sampling: SamplingConfig,
        input: str,
        output: str,
        *,
        cache_uri: str | None = None,
        systems: list[str | None],
        teacher_output: str,
        errors_output: str,
    ) -> None:
        super().__init__(stage_name, teachers, sampling, input, output, cache_uri=cache_uri)
        self.systems, self.teacher_output, self.errors_output = systems, teacher_output, errors_output
        self.writes = {
            output: COMPLETIONS_TYPE,
            teacher_output: pa.list_(pa.string()),
            errors_output: pa.list_(TEACHER_ERROR_TYPE),
        }

    def __call__(self, table: pa.Table) -> pa.Table:
        return process_table(table, self.stage_name, self.reads, self.writes, self._generate_pool)

    def _generate_pool(self, rows: list[Row]) -> list[RowResult]:
        completions: list[list[dict[str, Any]]] = [[] for _ in rows]
        names: list[list[str]] = [[] for _ in rows]
        errors: list[list[dict[str, str]]] = [[] for _ in rows]
        covered = [False] * len(rows)
        for teacher, engine, system in zip(self.teachers, self.engines, self.systems, strict=True):
            routed = [i for i, row in enumerate(rows) if teacher.route is None or teacher.route.matches(row)]
            inputs = [rows[i] | {self.input: with_system(list(rows[i][self.input]), system)} for i in routed]
            for i, outcome in zip(routed, self._teach(teacher, engine, inputs), strict=True):
                covered[i] = True
                if isinstance(outcome, Exception):
                    errors[i].append(
                        {"teacher": teacher.name, "error": f"{type(outcome).__name__}: {outcome}"}
                    )
                else:
                    completions[i] += outcome
                    names[i] += [teacher.name] * len(outcome)
        results: list[RowResult] = []
        for i, row in enumerate(rows):
            if not covered[i]:
                routes = sorted({t.route.column for t in self.teachers if t.route is not None})
                values = ", ".join(f"{column}={row.get(column)!r}" for column in routes)
                results.append(ValueError(f"no teacher's route covers this row ({values})"))
            elif not completions[i]:
                detail = "; ".join(f"{e['teacher']}: {e['error']}" for e in errors[i])
                results.append(RuntimeError(f"every routed teacher failed: {detail}"))
            else:
                results.append(
                    {
                        self.output: completions[i],
                        self.teacher_output: names[i],
                        self.errors_output: errors[i],
                    }
                )
        return results
