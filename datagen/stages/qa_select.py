"""Choose a grounded question-answer pair and attach it to the whole document (Command A
report, 3.3.6).

Each candidate (a generated "Question: ... Answer: ..." completion) is parsed and checked
against its fragment (judges.grounding): its answer must be grounded (lexical overlap at least
`min_grounding`) and, with `reject_title_answerable`, not answerable from the title alone.
Among the candidates that pass, the reward model's best wins (`rewards`), else the most
grounded. The SFT row puts the **whole** document and the question in the user turn and the
answer in the assistant turn; its length in the generator's tokens is recorded (`row_tokens`),
and rows longer than `training_length` are flagged so that the trainer's packing can plan them.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from datagen.stages.base import ERROR_COLUMN, BuildContext, Row, RowStage, StageSpec
from datagen.stages.fragment import load_tokenizer
from datagen.stages.registry import register_stage
from datasets_registry.kinds import MESSAGES_TYPE
from judges.grounding import answerable_from_title, lexical_grounding, parse_qa

if TYPE_CHECKING:
    from model_store import ResolvedModel

CANDIDATES_TYPE = pa.list_(
    pa.struct(
        [
            ("question", pa.string()),
            ("answer", pa.string()),
            ("grounding", pa.float64()),
            ("title_answerable", pa.bool_()),
            ("passed", pa.bool_()),
        ]
    )
)
QA_SCORES_TYPE = pa.struct(
    [
        ("grounding", pa.float64()),
        ("reward", pa.float64()),
        ("candidates", pa.int64()),
        ("passed", pa.int64()),
        ("fragment_tokens", pa.int64()),
        ("row_tokens", pa.int64()),
    ]
)
USER_FORMAT = "{document}\n\nAnswer this question about the document above.\nQuestion: {question}"


class QASelectStageSpec(StageSpec):
    """Pick the best grounded QA pair of a fragment and build the whole-document SFT row."""

    type: Literal["qa_select"] = "qa_select"
    completions: str = Field("completions", description="Column of generated QA completions.")
    rewards: str | None = Field(
        None, description="Column of reward-model scores, one per completion; none: by grounding."
    )
    fragment: str = Field("fragment", description="Column holding the fragment the pairs were drawn from.")
    text: str = Field("text", description="Column holding the whole document.")
    title: str = Field("title", description="Column holding the document's title.")
    user_format: str = Field(
        USER_FORMAT, description="The user turn: a format string with {document}, {title}, {question}."
    )
    min_grounding: float = Field(
        0.6, ge=0.0, le=1.0, description="Least share of the answer's content words in the fragment."
    )
    reject_title_answerable: bool = Field(True, description="Drop pairs whose answer is all in the title.")
    model: str | None = Field(
        None, description="Model whose tokenizer counts `row_tokens` (the generator's); none: not counted."
    )
    training_length: int | None = Field(
        None, ge=1, description="Rows longer than this (tokens) are flagged `over_training_length`."
    )


@register_stage
class QASelectStage(RowStage[QASelectStageSpec]):
    """Writes `prompt`, `messages` (whole document + question, answer), `candidates`,
    `drop_reason`, `row_tokens`, `over_training_length` and `scores`."""

    spec_class = QASelectStageSpec

    def __init__(self, spec: QASelectStageSpec, context: BuildContext | None = None) -> None:
        super().__init__(spec, context)
        context = context or BuildContext()
        self.model: ResolvedModel | None = context.resolve_model(spec.model, "model") if spec.model else None
        optional = [c for c in (spec.rewards,) if c]
        self.reads = (spec.completions, spec.fragment, spec.text, spec.title, "fragment_tokens", *optional)
        self.writes = {
            "prompt": MESSAGES_TYPE,
            "messages": MESSAGES_TYPE,
            "candidates": CANDIDATES_TYPE,
            "drop_reason": pa.string(),
            "row_tokens": pa.int64(),
            "over_training_length": pa.bool_(),
            "scores": QA_SCORES_TYPE,
        }

    @property
    def models(self) -> list[str]:
        return [self.model.identity] if self.model else []

    def process_row(self, row: Row) -> Row:
        spec = self.spec
        completions = row[spec.completions] or []
        rewards = row[spec.rewards] if spec.rewards else None
        if rewards is not None and len(rewards) != len(completions):
            raise ValueError(f"{len(completions)} completions but {len(rewards)} rewards")
        candidates: list[dict[str, Any]] = []
        for completion in completions:
            parsed = parse_qa(completion["text"])
            if parsed is None:
                candidates.append({"question": None, "answer": None, "grounding": None,
                                   "title_answerable": None, "passed": False})  # fmt: skip
                continue
            question, answer = parsed
            grounding = lexical_grounding(answer, row[spec.fragment])
            titled = answerable_from_title(answer, row[spec.title] or "")
            passed = grounding >= spec.min_grounding and not (spec.reject_title_answerable and titled)
            candidates.append({"question": question, "answer": answer, "grounding": grounding,
                               "title_answerable": titled, "passed": passed})  # fmt: skip
        passing = [i for i, c in enumerate(candidates) if c["passed"]]
        scores: dict[str, Any] = {"candidates": len(candidates), "passed": len(passing),
                                  "fragment_tokens": row["fragment_tokens"]}  # fmt: skip
        out: Row = {"prompt": None, "messages": None, "candidates": candidates, "drop_reason": None,
                    "row_tokens": None, "over_training_length": None}  # fmt: skip
        if not passing:
            return out | {"scores": scores, "drop_reason": self._drop_reason(candidates)}
        # max keeps the first of equal keys, so the choice is deterministic.
        best = max(passing, key=lambda i: rewards[i] if rewards is not None else candidates[i]["grounding"])
        chosen = candidates[best]
        user = spec.user_format.format(
            document=row[spec.text], title=row[spec.title] or "", question=chosen["question"]
        )
        prompt = [{"role": "user", "content": user}]
        messages = [*prompt, {"role": "assistant", "content": chosen["answer"]}]
        row_tokens = None
        if self.model is not None:
            tokenizer = load_tokenizer(self.model.path, self.model.gguf_file)
            text = tokenizer.apply_chat_template(messages, tokenize=False)
            row_tokens = len(tokenizer(text, add_special_tokens=False).input_ids)
        scores |= {"grounding": chosen["grounding"], "reward": rewards[best] if rewards else None,
                   "row_tokens": row_tokens}  # fmt: skip
        over = row_tokens > spec.training_length if row_tokens is not None and spec.training_length else None
        return out | {"prompt": prompt, "messages": messages, "row_tokens": row_tokens,
                      "over_training_length": over, "scores": scores}  # fmt: skip

    def _drop_reason(self, candidates: list[dict[str, Any]]) -> str:
        parsed = [c for c in candidates if c["question"] is not None]
        if not parsed:
            return "no_parseable_pair"
        if all(c["grounding"] < self.spec.min_grounding for c in parsed):
            return "not_grounded"
        return "answerable_from_title"

    def metrics(self, result: Any) -> dict[str, Any]:
        """Documents, candidates, kept pairs, drops, fragment-token histogram, long rows."""
        columns = ["candidates", "drop_reason", "messages", "row_tokens", "over_training_length", "scores",
                   ERROR_COLUMN]  # fmt: skip
        rows: list[Row] = []
        for batch in result.select_columns(columns).iter_batches(batch_format="pyarrow"):
            rows += [r for r in batch.to_pylist() if r[ERROR_COLUMN] is None and r["candidates"] is not None]
        if not rows:
            return {}
        fragment_tokens = [r["scores"]["fragment_tokens"] for r in rows]
        counts, edges = np.histogram(fragment_tokens, bins=min(8, len(set(fragment_tokens))))
        candidates = [c for r in rows for c in r["candidates"]]
        row_tokens = [r["row_tokens"] for r in rows if r["row_tokens"] is not None]
        return {
            "fragments": len(rows),
            "candidates": len(candidates),
            "parsed": sum(c["question"] is not None for c in candidates),
            "grounded": sum(bool(c["passed"]) for c in candidates),
            "kept_pairs": sum(r["messages"] is not None for r in rows),
            "drop_reasons": dict(sorted(Counter(r["drop_reason"] for r in rows if r["drop_reason"]).items())),
            "fragment_tokens": {
                "min": min(fragment_tokens),
                "max": max(fragment_tokens),
                "histogram": {"counts": counts.tolist(), "edges": [round(e) for e in edges]},
            },  # fmt: skip
            "row_tokens_max": max(row_tokens) if row_tokens else None,
            "over_training_length": sum(bool(r["over_training_length"]) for r in rows),
        }
