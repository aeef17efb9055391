"""Attach system-prompt preambles to prompts and verify completions against them (Command A
report, 3.3.1.3).

`preamble_attach` draws a preamble per row from a library (a JSONL file of `id`, `type`,
`text`, `check`; see judges/preambles.py for the checks), seeded by the row's id, and puts its
text in the system turn. `preamble_verify` scores each completion by the share of checks it
passes: the preamble's and, with `user_instructions`, the row's own IFEval instructions
(`instruction_id_list`, `kwargs`), so best-of-N then chooses a completion that satisfies both.
Its `metrics()` gives, per preamble type, the teacher's compliance before selection (all
completions) and after it (the chosen ones).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from functools import lru_cache
from typing import Any, Literal

import pyarrow as pa
from pydantic import Field

from assay.errors import AssayError
from datagen.stages.base import ERROR_COLUMN, BuildContext, Row, RowStage, StageSpec
from datagen.stages.personas import row_random
from datagen.stages.registry import register_stage
from datasets_registry.kinds import MESSAGES_TYPE
from judges.ifeval import check_instruction
from judges.language_id import LanguageIdentifier
from judges.preambles import check_kind, verify_preamble


@lru_cache(maxsize=1)
def _identifier() -> LanguageIdentifier:
    """One language identifier per worker process."""
    return LanguageIdentifier()


def load_preambles(ref: str, context: BuildContext, field: str) -> tuple[list[Row], str]:
    """The preambles of a JSONL library and its identity (path and sha256).

    Raises:
        AssayError: a missing or empty file, or a preamble without `id`, `type`, `text`, or
            with a malformed `check`.
    """
    path = context.resolve(ref)
    if not path.is_file():
        raise AssayError(f"{context.field(field)}: preamble library not found: {path}")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        raise AssayError(f"{context.field(field)}: the preamble library {path} is empty")
    for number, row in enumerate(rows, start=1):
        missing = [key for key in ("id", "type", "text", "check") if not row.get(key)]
        if missing:
            raise AssayError(f"{context.field(field)}: {path}:{number} lacks {', '.join(missing)}")
        try:
            check_kind(row["check"])
        except ValueError as err:
            raise AssayError(f"{context.field(field)}: {path}:{number}: {err}") from err
    return rows, f"file:{path}#sha256={hashlib.sha256(path.read_bytes()).hexdigest()}"


class PreambleAttachStageSpec(StageSpec):
    """Draw a preamble per row and put it in the conversation's system turn."""

    type: Literal["preamble_attach"] = "preamble_attach"
    preambles: str = Field(description="Preamble library: a JSONL file, relative to the spec file.")
    input: str = Field("user_messages", description="Column holding the conversation without preamble.")
    output: str = Field("prompt_messages", description="Column for the conversation with its preamble.")
    rate: float = Field(1.0, ge=0.0, le=1.0, description="Share of rows that get a preamble.")
    types: list[str] | None = Field(None, description="Draw only preambles of these types (default: all).")
    seed: int = Field(0, description="Seed of the draws, combined with each row's id.")


@register_stage
class PreambleAttachStage(RowStage[PreambleAttachStageSpec]):
    """Writes the conversation with its preamble, `preamble_id`, `preamble_type` and
    `preamble_check` (JSON); rows without a preamble get nulls and their conversation as it was."""

    spec_class = PreambleAttachStageSpec

    def __init__(self, spec: PreambleAttachStageSpec, context: BuildContext | None = None) -> None:
        super().__init__(spec, context)
        context = context or BuildContext()
        preambles, self.library = load_preambles(spec.preambles, context, "preambles")
        self.preambles = [p for p in preambles if spec.types is None or p["type"] in spec.types]
        if not self.preambles:
            raise AssayError(f"{context.field('types')}: no preamble of types {spec.types} in the library")
        self.reads = ("id", spec.input)
        self.writes = {
            spec.output: MESSAGES_TYPE,
            "preamble_id": pa.string(),
            "preamble_type": pa.string(),
            "preamble_check": pa.string(),
        }

    def process_row(self, row: Row) -> Row:
        spec = self.spec
        messages = list(row[spec.input] or [])
        if not messages:
            raise ValueError(f"column {spec.input!r} is empty")
        key = str(row["id"])
        if row_random(spec.seed, key, "preamble-rate").random() >= spec.rate:
            return {spec.output: messages, "preamble_id": None, "preamble_type": None, "preamble_check": None}
        preamble = row_random(spec.seed, key, "preamble").choice(self.preambles)
        if messages[0]["role"] == "system":  # the preamble goes first, the row's own system turn after
            messages[0] = {"role": "system", "content": f"{preamble['text']}\n\n{messages[0]['content']}"}
        else:
            messages.insert(0, {"role": "system", "content": preamble["text"]})
        return {
            spec.output: messages,
            "preamble_id": preamble["id"],
            "preamble_type": preamble["type"],
            "preamble_check": json.dumps(preamble["check"], sort_keys=True),
        }

    def metrics(self, result: Any) -> dict[str, Any]:
        """The preamble library the rows drew from (kept in the job's lineage)."""
        return {"preamble_library": self.library, "preambles": len(self.preambles)}


class PreambleVerifyStageSpec(StageSpec):
    """Score completions by the preamble's check and the row's own instructions."""

    type: Literal["preamble_verify"] = "preamble_verify"
    completions: str = Field("completions", description="Column of completions to check.")
    output: str = Field(
        "completion_scores", description="Column for one score per completion (share of checks passed)."
    )
    user_instructions: bool = Field(
        True,
        description="Also check the row's IFEval instructions (reads `instruction_id_list` and `kwargs`).",
    )


@register_stage
class PreambleVerifyStage(RowStage[PreambleVerifyStageSpec]):
    """Writes one score per completion and `preamble_ok`, one flag per completion (null flags
    for a row without preamble). A row with neither a preamble nor instructions fails."""

    spec_class = PreambleVerifyStageSpec

    def __init__(self, spec: PreambleVerifyStageSpec, context: BuildContext | None = None) -> None:
        super().__init__(spec, context)
        user = ("instruction_id_list", "kwargs") if spec.user_instructions else ()
        self.reads = (spec.completions, "preamble_check", *user)
        self.writes = {spec.output: pa.list_(pa.float64()), "preamble_ok": pa.list_(pa.bool_())}

    def process_row(self, row: Row) -> Row:
        spec = self.spec
        check = json.loads(row["preamble_check"]) if row["preamble_check"] else None
        ids = (row.get("instruction_id_list") or []) if spec.user_instructions else []
        kwargs = row.get("kwargs") or [None] * len(ids)
        if check is None and not ids:
            raise ValueError("row has neither a preamble nor instructions to verify")
        scores, flags = [], []
        for completion in row[spec.completions]:
            text = completion["text"]
            passed = [check_instruction(i, text, k) for i, k in zip(ids, kwargs, strict=True)]
            if check is not None:
                flags.append(verify_preamble(text, check, _identifier()))
                passed.append(flags[-1])
            scores.append(sum(passed) / len(passed))
        return {spec.output: scores, "preamble_ok": flags if check is not None else None}

    def metrics(self, result: Any) -> dict[str, Any]:
        """Preamble compliance per type: of all completions (before), of each prompt's best-scored
        completion (after: best-of-N's choice), and the SFT rows kept (score threshold met)."""
        columns = ["preamble_type", "preamble_ok", self.spec.output, "messages", ERROR_COLUMN]
        available = set(result.schema().names)
        if not set(columns) <= available:
            return {}
        before: dict[str, list[bool]] = defaultdict(list)
        after: dict[str, list[bool]] = defaultdict(list)
        kept: dict[str, int] = defaultdict(int)
        for batch in result.select_columns(columns).iter_batches(batch_format="pyarrow"):
            for row in batch.to_pylist():
                if row[ERROR_COLUMN] is not None or row["preamble_ok"] is None:
                    continue
                kind, scores = row["preamble_type"], row[self.spec.output]
                before[kind] += row["preamble_ok"]
                # Best-of-N's choice: the first completion of the highest score.
                after[kind].append(row["preamble_ok"][max(range(len(scores)), key=scores.__getitem__)])
                kept[kind] += row["messages"] is not None
        summary = {
            kind: {
                "completions": len(flags),
                "before": round(sum(flags) / len(flags), 4),
                "prompts": len(after[kind]),
                "after": round(sum(after[kind]) / len(after[kind]), 4),
                "sft_rows": kept[kind],
            }
            for kind, flags in sorted(before.items())
        }
        return {"by_type": summary}
