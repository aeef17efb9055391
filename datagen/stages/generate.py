"""Generate completions with LLM engines inside Ray actor pools (one model load per actor).

A stage has one engine, or a pool of teachers (multilingual arbitrage): each row goes to every
teacher whose route matches it, and each completion records the model that wrote it. Calls go
through the content-addressed cache, so a re-run pays only for rows not generated before.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
from pydantic import Field, model_validator

from assay.config import StrictModel
from datagen.cache import CompletionCache, call_key
from datagen.engines.base import COMPLETIONS_TYPE, Conversation, Engine
from datagen.engines.config import (
    AnyEngineConfig,
    EngineConfig,
    HFEngineConfig,
    OpenAIEngineConfig,
    SamplingConfig,
    VLLMEngineConfig,
)
from datagen.stages.base import BuildContext, Row, RowResult, Stage, StageSpec, process_table
from datagen.stages.registry import register_stage

if TYPE_CHECKING:
    import ray.data

    from model_store import ResolvedModel


class RouteSpec(StrictModel):
    """Send a row to a teacher only when its `column` holds one of `values`."""

    column: str = Field("language", description="Column to route on.")
    values: list[str] = Field(min_length=1, description="Values that go to this teacher.")


class TeacherSpec(StrictModel):
    """One model of a teacher pool."""

    name: str | None = Field(None, description="Teacher name in reports; default: the model.")
    engine: EngineConfig = Field(description="The teacher's engine: backend, model and how to run it.")
    route: RouteSpec | None = Field(None, description="Which rows this teacher gets; default: all.")


class GenerateStageSpec(StageSpec):
    """Sample `n` completions per conversation with one engine, or with a pool of teachers."""

    type: Literal["generate"] = "generate"
    input: str = Field("prompt_messages", description="Column holding the conversation.")
    output: str = Field("completions", description="Column for the list of completions.")
    engine: EngineConfig | None = Field(None, description="The engine (default: hf with the default model).")
    teachers: list[TeacherSpec] | None = Field(
        None, min_length=1, description="A pool of engines instead of one; every completion names its model."
    )
    sampling: SamplingConfig = Field(
        default_factory=SamplingConfig, description="How completions are sampled."
    )

    @model_validator(mode="after")
    def _one_engine_or_teachers(self) -> GenerateStageSpec:
        if self.engine is not None and self.teachers is not None:
            raise ValueError("give `engine` or `teachers`, not both")
        return self

    def teacher_specs(self) -> list[TeacherSpec]:
        """The teachers, with a lone engine as a pool of one."""
        return self.teachers or [TeacherSpec(engine=self.engine or HFEngineConfig())]


@dataclass(frozen=True)
class Route:
    """Send a row to a teacher only when `row[column]` is one of `values`."""

    column: str
    values: tuple[str, ...]

    def matches(self, row: Row) -> bool:
        return row.get(self.column) in self.values


@dataclass(frozen=True)
class Teacher:
    """One engine of a stage: its config, its resolved local model (hf, vllm), and its route."""

    name: str
    engine: AnyEngineConfig
    model: ResolvedModel | None
    route: Route | None = None

    @classmethod
    def from_spec(cls, spec: TeacherSpec, context: BuildContext, field: str) -> Teacher:
        """Resolve a teacher's local model (hf, vllm) now, so a missing one fails before any work."""
        engine = spec.engine
        route = Route(spec.route.column, tuple(spec.route.values)) if spec.route else None
        local = not isinstance(engine, OpenAIEngineConfig)
        model = context.resolve_model(engine.model, f"{field}.model") if local else None
        return cls(spec.name or engine.model, engine, model, route)

    @property
    def identity(self) -> str:
        """The model identity used in lineage, cache keys and accounting."""
        if isinstance(self.engine, OpenAIEngineConfig):
            return f"openai:{self.engine.base_url}#{self.engine.model}"
        assert self.model is not None
        # vllm samples differently from hf with the same seed, and bfloat16 weights differently
        # from float32 ones: their cached calls must differ.
        identity = self.model.identity
        if self.engine.dtype != "float32":
            identity = f"{identity}:{self.engine.dtype}"
        return f"vllm:{identity}" if isinstance(self.engine, VLLMEngineConfig) else identity


def create_engine(teacher: Teacher) -> Engine:
    """Load the engine a teacher names (inside the actor that will use it)."""
    if isinstance(teacher.engine, OpenAIEngineConfig):
        from datagen.engines.openai_engine import OpenAIEngine

        return OpenAIEngine(teacher.engine)
    assert teacher.model is not None
    if isinstance(teacher.engine, VLLMEngineConfig):
        from datagen.engines.vllm_engine import VLLMEngine

        return VLLMEngine(teacher.engine, teacher.model)
    from datagen.engines.hf import HFEngine

    return HFEngine(teacher.engine, teacher.model)


@register_stage
class GenerateStage(Stage[GenerateStageSpec]):
    """Sample `sampling.n` completions per conversation from each matching teacher."""

    spec_class = GenerateStageSpec

    def __init__(self, spec: GenerateStageSpec, context: BuildContext | None = None) -> None:
        super().__init__(spec, context)
        context = context or BuildContext()
        self.teachers = [
            Teacher.from_spec(teacher, context, f"teachers.{n}.engine" if spec.teachers else "engine")
            for n, teacher in enumerate(spec.teacher_specs())
        ]
        self.sampling, self.cache_uri = spec.sampling, context.cache_uri
        self.input, self.output = spec.input, spec.output
        routes = sorted({t.route.column for t in self.teachers if t.route is not None})
        self.reads = (spec.input, *routes)
        self.writes = {spec.output: COMPLETIONS_TYPE}

    @property
    def models(self) -> list[str]:
        return [teacher.identity for teacher in self.teachers]

    @property
    def actor_cpus(self) -> float:
        """CPUs each actor reserves: the most any of its teachers asks for."""
        return max(teacher.engine.num_cpus for teacher in self.teachers)

    @property
    def actor_gpus(self) -> float:
        """GPUs each actor reserves (vllm on GPUs): the most any of its teachers asks for."""
        return max(teacher.engine.gpus_per_replica() for teacher in self.teachers)

    @property
    def concurrency(self) -> int:
        return max(teacher.engine.concurrency for teacher in self.teachers)

    def apply(self, ds: ray.data.Dataset) -> ray.data.Dataset:
        import ray.data

        # API keys reach the actors through Ray's runtime environment (they may run on other
        # nodes, or have started before the key was set); never through configs or lineage.
        key_names = {t.engine.api_key_env for t in self.teachers if isinstance(t.engine, OpenAIEngineConfig)}
        keys = {name: os.environ[name] for name in key_names if name and name in os.environ}
        # One actor pool holds every teacher: separate pools per teacher can starve each other
        # of CPUs in Ray Data's scheduler and wait forever on a small machine.
        with warnings.catch_warnings():
            # Ray 2.60 deprecates extra remote args but has no named parameter for max_restarts
            # yet; its own docs (ActorPoolMapOperator) name map_batches(max_restarts=0).
            warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
            return ds.map_batches(
                _GenerateWorker,
                fn_constructor_args=(self.name, self.teachers, self.sampling, self.input, self.output),
                fn_constructor_kwargs={"cache_uri": self.cache_uri},
                batch_size=min(teacher.engine.batch_size for teacher in self.teachers),
                batch_format="pyarrow",
                compute=ray.data.ActorPoolStrategy(size=self.concurrency),
                num_cpus=self.actor_cpus,
                **({"num_gpus": self.actor_gpus} if self.actor_gpus else {}),
                udf_modifying_row_count=False,
                # No actor restarts: a model actor that dies (out of memory, mostly) would die
                # again reloading its model, so the job fails with its error instead; Ray also
                # warns, on every job, that restarting an actor can fail when its constructor
                # arguments sit in the object store.
                max_restarts=0,
                **({"runtime_env": {"env_vars": keys}} if keys else {}),
            )


class _GenerateWorker:
    """A Ray actor holding the engines of a stage's teachers; called with batches of rows."""

    def __init__(
        self,
        stage_name: str,
        teachers: list[Teacher],
        sampling: SamplingConfig,
        input: str,
        output: str,
        *,
        cache_uri: str | None = None,
    ) -> None:
        self.stage_name, self.teachers, self.sampling = stage_name, teachers, sampling
        self.input, self.output = input, output
        self.cache = CompletionCache(cache_uri) if cache_uri else None
        self.engines = [create_engine(teacher) for teacher in teachers]
        routes = sorted({t.route.column for t in teachers if t.route is not None})
        self.reads = (input, *routes)

    def __del__(self) -> None:
        # Ray Data calls a UDF's __del__ when it shuts its actor down: close the engines' HTTP
        # clients now, so no "unclosed connector" warning reaches the job's output.
        for engine in getattr(self, "engines", []):
            close = getattr(engine, "close", None)
            if close is not None:
                close()
        self.engines = []

    def __call__(self, table: pa.Table) -> pa.Table:
        return process_table(
            table, self.stage_name, self.reads, {self.output: COMPLETIONS_TYPE}, self._generate
        )

    def _generate(self, rows: list[Row]) -> list[RowResult]:
        results: list[RowResult] = [{self.output: []} for _ in rows]
        for teacher, engine in zip(self.teachers, self.engines, strict=True):
            routed = [
                i
                for i, result in enumerate(results)
                if not isinstance(result, Exception)
                and (teacher.route is None or teacher.route.matches(rows[i]))
            ]
            for i, outcome in zip(
                routed, self._teach(teacher, engine, [rows[i] for i in routed]), strict=True
            ):
                results[i] = (
                    outcome
                    if isinstance(outcome, Exception)
                    else {self.output: results[i][self.output] + outcome}
                )  # type: ignore[index]
        return results

    def _teach(
        self, teacher: Teacher, engine: Engine, rows: list[Row]
    ) -> list[list[dict[str, Any]] | Exception]:
        """One teacher's completions for its rows: from the cache where the call was made before."""
        return generate_cached(teacher, engine, [row[self.input] for row in rows], self.sampling, self.cache)


def generate_cached(
    teacher: Teacher,
    engine: Engine,
    conversations: Sequence[Conversation],
    sampling: SamplingConfig,
    cache: CompletionCache | None,
) -> list[list[dict[str, Any]] | Exception]:
    """Completions (rows of COMPLETION_TYPE) of each conversation, as one batch of engine calls.

    A call made before comes from the cache (`cached: True`); a prompt the engine refuses
    (`check_prompt`) fails alone, and so does a conversation whose batch failed and that fails
    again on its own. Fresh completions are written to the cache at once.
    """
    keys = [call_key(teacher.identity, conversation, sampling) for conversation in conversations]
    cached = cache.get(keys) if cache else {}
    outcomes: list[list[dict[str, Any]] | Exception] = [[] for _ in conversations]
    todo = []
    for i, (conversation, key) in enumerate(zip(conversations, keys, strict=True)):
        if key in cached:
            outcomes[i] = [c | {"cached": True} for c in cached[key]]
            continue
        try:
            engine.check_prompt(conversation)
        except Exception as err:  # noqa: BLE001 - a prompt the engine refuses fails its row
            outcomes[i] = err
            continue
        todo.append(i)
    fresh: dict[str, list[dict[str, Any]]] = {}
    called = _call(engine, [conversations[i] for i in todo], sampling)
    for i, outcome in zip(todo, called, strict=True):
        outcomes[i] = outcome
        if not isinstance(outcome, Exception):
            fresh[keys[i]] = outcome
    if cache is not None:
        cache.put(fresh)
    return outcomes


def _call(
    engine: Engine, conversations: Sequence[Conversation], sampling: SamplingConfig
) -> list[list[dict[str, Any]] | Exception]:
    """Generate for conversations as one batch; if the whole batch fails, retry one by one."""
    if not conversations:
        return []
    started = time.monotonic()
    try:
        outcomes = engine.generate(conversations, sampling)
    except Exception:  # noqa: BLE001 - retry one by one so only the bad conversation fails
        return [_one(engine, conversation, sampling) for conversation in conversations]
    share = (time.monotonic() - started) / max(1, len(conversations) * sampling.n)
    return [o if isinstance(o, Exception) else [c.to_row(share) for c in o] for o in outcomes]


def _one(
    engine: Engine, conversation: Conversation, sampling: SamplingConfig
) -> list[dict[str, Any]] | Exception:
    started = time.monotonic()
    try:
        (outcome,) = engine.generate([conversation], sampling)
    except Exception as err:  # noqa: BLE001 - this conversation fails alone
        return err
    if isinstance(outcome, Exception):
        return outcome
    share = (time.monotonic() - started) / sampling.n
    return [c.to_row(share) for c in outcome]
