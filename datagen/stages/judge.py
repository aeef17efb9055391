"""Pairwise LLM judging in a pipeline: a panel of judges (any engines) compares two replies per
row in both orders (judges.llm_judge); every judge call goes through the LLM-call cache.

Reads a prompt (messages or text) and two replies (text, a completion struct, a list of
completions: the first is taken, or messages: the last assistant turn); writes the panel's
`verdict` (`a`, `b` or `tie`), each judge's verdict with both raw replies, and the two replies'
lengths in characters (for the length-controlled win rate).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
from pydantic import Field

from assay.config import StrictModel
from datagen.cache import CompletionCache
from datagen.engines.base import Engine
from datagen.engines.config import EngineConfig, SamplingConfig
from datagen.stages.base import BuildContext, Row, RowResult, Stage, StageSpec, process_table
from datagen.stages.generate import Teacher, TeacherSpec, create_engine, generate_cached
from datagen.stages.registry import register_stage
from judges.llm_judge import PAIRWISE_TEMPLATE, Conversation, PairwiseJudge, load_template, panel_outcome

if TYPE_CHECKING:
    import ray.data

JUDGE_VERDICT_TYPE = pa.struct(
    [
        ("judge", pa.string()),
        ("outcome", pa.string()),
        ("consistent", pa.bool_()),
        ("first_order", pa.string()),  # the verdict with A shown first (null: did not parse)
        ("second_order", pa.string()),  # with B shown first, in the original labels
        ("raw_first", pa.string()),
        ("raw_second", pa.string()),
    ]
)


class JudgeSpec(StrictModel):
    """One judge of a panel."""

    name: str | None = Field(None, description="Judge name in verdicts; default: the model.")
    engine: EngineConfig = Field(description="The judge's engine: backend, model and how to run it.")
    system: str | None = Field(None, description="This judge's system message (default: the stage's).")


class PairwiseJudgeStageSpec(StageSpec):
    """Compare two replies per row with a panel of LLM judges, in both orders."""

    type: Literal["pairwise_judge"] = "pairwise_judge"
    prompt: str = Field("prompt_messages", description="Column holding the prompt (messages or text).")
    response_a: str = Field("response_a", description="Column holding reply A.")
    response_b: str = Field("response_b", description="Column holding reply B.")
    judges: list[JudgeSpec] = Field(min_length=1, description="The panel.")
    template: str | None = Field(
        None, description="Jinja2 template file (prompt, response_a, response_b); default: the built-in one."
    )
    system: str | None = Field(None, description="A system message for the judges.")
    panel: Literal["majority", "mean"] = Field("majority", description="How the panel's verdicts combine.")
    sampling: SamplingConfig = Field(
        default_factory=lambda: SamplingConfig(temperature=0.0, max_tokens=256),
        description="Judge sampling (default greedy, 256 tokens); n must be 1.",
    )
    output: str = Field("verdict", description="Column for the panel's verdict: a, b or tie.")


def reply_text(value: Any) -> str:
    """The text of a reply cell: text, a completion struct, a list of completions (the first) or
    messages (the last assistant turn)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "text" in value:
        return value["text"]
    if isinstance(value, list) and value:
        if isinstance(value[0], dict) and "role" in value[0]:
            return next(m["content"] for m in reversed(value) if m["role"] == "assistant")
        return reply_text(value[0])
    raise ValueError(f"not a reply: {value!r:.80}")


def prompt_text(value: Any) -> str:
    """The prompt as text: the last user turn of messages, or the text itself."""
    if isinstance(value, str):
        return value
    return next(m["content"] for m in reversed(value) if m["role"] == "user")


@register_stage
class PairwiseJudgeStage(Stage[PairwiseJudgeStageSpec]):
    """A panel of judges in one Ray actor pool (each actor holds every judge's engine)."""

    spec_class = PairwiseJudgeStageSpec

    def __init__(self, spec: PairwiseJudgeStageSpec, context: BuildContext | None = None) -> None:
        super().__init__(spec, context)
        context = context or BuildContext()
        if spec.sampling.n != 1:
            raise ValueError(f"{context.field('sampling.n')}: a judge samples one reply (n: 1)")
        self.judges = [
            Teacher.from_spec(TeacherSpec(name=j.name, engine=j.engine), context, f"judges.{n}.engine")
            for n, j in enumerate(spec.judges)
        ]
        names = [j.name for j in self.judges]
        if len(set(names)) != len(names):
            raise ValueError(f"{context.field('judges')}: judge names must be unique: {', '.join(names)}")
        self.template_text = (
            context.resolve(spec.template).read_text() if spec.template else PAIRWISE_TEMPLATE
        )
        self.cache_uri = context.cache_uri
        self.reads = (spec.prompt, spec.response_a, spec.response_b)
        self.writes = {
            spec.output: pa.string(),
            "judge_verdicts": pa.list_(JUDGE_VERDICT_TYPE),
            "length_a": pa.int64(),
            "length_b": pa.int64(),
        }

    @property
    def models(self) -> list[str]:
        return [judge.identity for judge in self.judges]

    @property
    def concurrency(self) -> int:
        return 1

    @property
    def actor_cpus(self) -> float:
        """CPUs the actor reserves: the most any judge's engine asks for."""
        return max(j.engine.num_cpus for j in self.judges)

    def apply(self, ds: ray.data.Dataset) -> ray.data.Dataset:
        return self.map_actors(ds, _JudgeWorker, min(j.engine.batch_size for j in self.judges))


class CachedJudgeEngine:
    """A `judges.llm_judge.JudgeEngine` over a datagen engine, through the LLM-call cache."""

    def __init__(
        self, judge: Teacher, engine: Engine, sampling: SamplingConfig, cache: CompletionCache | None
    ) -> None:
        self.judge, self.name, self.identity, self.engine = judge, judge.name, judge.identity, engine
        self.sampling, self.cache = sampling, cache

    def reply(self, conversations: Sequence[Conversation]) -> list[str | Exception]:
        # A judge that fails gives ties, with the error kept (judges.llm_judge).
        outcomes = generate_cached(self.judge, self.engine, conversations, self.sampling, self.cache)
        return [o if isinstance(o, Exception) else o[0]["text"] for o in outcomes]


class _JudgeWorker:
    """A Ray actor holding every judge's engine."""

    def __init__(self, stage: PairwiseJudgeStage) -> None:
        self.stage, self.spec = stage, stage.spec
        cache = CompletionCache(stage.cache_uri) if stage.cache_uri else None
        self.engines = [
            CachedJudgeEngine(j, create_engine(j), self.spec.sampling, cache) for j in stage.judges
        ]
        template = load_template(stage.template_text)
        self.judges = [PairwiseJudge(template, j.system or self.spec.system) for j in self.spec.judges]

    def __call__(self, table: pa.Table) -> pa.Table:
        stage = self.stage
        return process_table(table, stage.name, stage.reads, stage.writes, self._judge)

    def _judge(self, rows: list[Row]) -> list[RowResult]:
        spec = self.spec
        items: list[tuple[str, str, str] | Exception] = []
        for row in rows:
            try:
                items.append((prompt_text(row[spec.prompt]), reply_text(row[spec.response_a]),
                              reply_text(row[spec.response_b])))  # fmt: skip
            except Exception as err:  # noqa: BLE001 - a malformed row fails alone
                items.append(err)
        good = [item for item in items if not isinstance(item, Exception)]
        per_judge = [j.judge(e, good) for j, e in zip(self.judges, self.engines, strict=True)] if good else []
        results: list[RowResult] = []
        position = 0
        for item in items:
            if isinstance(item, Exception):
                results.append(item)
                continue
            verdicts = [judged[position] for judged in per_judge]
            position += 1
            results.append(
                {
                    spec.output: panel_outcome(verdicts, spec.panel),
                    "judge_verdicts": [
                        {
                            "judge": engine.name,
                            "outcome": v.outcome,
                            "consistent": v.consistent,
                            "first_order": v.parsed[0],
                            "second_order": v.parsed[1],
                            "raw_first": v.raw[0],
                            "raw_second": v.raw[1],
                        }
                        for engine, v in zip(self.engines, verdicts, strict=True)
                    ],  # fmt: skip
                    "length_a": len(item[1]),
                    "length_b": len(item[2]),
                }
            )
        return results
