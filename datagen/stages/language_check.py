"""Check that each completion is in its prompt's language (judges.language_id).

Writes one flag per completion (`language_ok`) and the language identified; score columns named
in `zero_scores` get 0.0 for the completions in the wrong language, and the selection stages
(`rank_select`) never choose a completion whose flag is false. Code blocks and quotes are
ignored; a completion with too few letters left to tell passes.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import pyarrow as pa
from pydantic import Field

from datagen.stages.base import BuildContext, Row, RowStage, StageSpec
from datagen.stages.registry import register_stage
from judges.language_id import Backend, LanguageIdentifier, check_language

RESPONSE_LANGUAGE = "language:response_language"


@lru_cache(maxsize=4)
def _identifier(backend: Backend, languages: tuple[str, ...] | None) -> LanguageIdentifier:
    """One identifier per worker process (its model loads once, on first use)."""
    return LanguageIdentifier(backend, list(languages) if languages else None)


def expected_language(row: Row, language_column: str, follow_instructions: bool) -> str:
    """The language a row's replies must be in: its `language`, or the language an IFEval
    `response_language` instruction of the row asks for.

    Raises:
        ValueError: the row names no language.
    """
    if follow_instructions:
        ids = row.get("instruction_id_list") or []
        kwargs = row.get("kwargs") or [None] * len(ids)
        for instruction, arguments in zip(ids, kwargs, strict=False):
            if instruction.endswith(RESPONSE_LANGUAGE) and arguments and arguments.get("language"):
                return str(arguments["language"])
    language = row.get(language_column)
    if not language:
        raise ValueError(f"row has no language in column {language_column!r}")
    return str(language)


class LanguageCheckStageSpec(StageSpec):
    """Flag the completions that are not in the row's language."""

    type: Literal["language_check"] = "language_check"
    completions: str = Field("completions", description="Column of completions to check.")
    language: str = Field("language", description="Column holding the expected language (ISO 639-1).")
    output: str = Field("language_ok", description="Column for one flag per completion.")
    detected: str = Field(
        "language_detected",
        description="Column for the language identified per completion (null: too short).",
    )
    backend: Backend = Field("py3langid", description="Language-ID library: py3langid, lingua or langdetect.")
    candidates: list[str] | None = Field(
        None, description="Restrict identification to these languages (default: every language known)."
    )
    min_letters: int = Field(
        12, ge=1, description="Fewer letters than this (after stripping): not judged, passes."
    )
    follow_instructions: bool = Field(
        False,
        description="A row's IFEval `language:response_language` instruction overrides its language "
        "(reads `instruction_id_list` and `kwargs`).",
    )
    zero_scores: list[str] = Field(
        default_factory=list,
        description="Score columns (one float per completion) set to 0 where the flag is false.",
    )


@register_stage
class LanguageCheckStage(RowStage[LanguageCheckStageSpec]):
    """One language flag per completion; wrong-language completions score 0 in `zero_scores`."""

    spec_class = LanguageCheckStageSpec

    def __init__(self, spec: LanguageCheckStageSpec, context: BuildContext | None = None) -> None:
        super().__init__(spec, context)
        instructions = ("instruction_id_list", "kwargs") if spec.follow_instructions else ()
        self.reads = (spec.completions, spec.language, *instructions, *spec.zero_scores)
        self.writes = {spec.output: pa.list_(pa.bool_()), spec.detected: pa.list_(pa.string())}
        self.writes |= {column: pa.list_(pa.float64()) for column in spec.zero_scores}
        self.languages = tuple(sorted(spec.candidates)) if spec.candidates else None

    def process_row(self, row: Row) -> Row:
        spec = self.spec
        expected = expected_language(row, spec.language, spec.follow_instructions)
        identifier = _identifier(spec.backend, self.languages)
        checks = [
            check_language(c["text"] or "", expected, identifier, min_letters=spec.min_letters)
            for c in row[spec.completions] or []
        ]
        out: Row = {spec.output: [c.ok for c in checks], spec.detected: [c.detected for c in checks]}
        for column in spec.zero_scores:
            scores = row[column] or []
            if len(scores) != len(checks):
                raise ValueError(f"{len(checks)} completions but {len(scores)} values in {column!r}")
            out[column] = [s if check.ok else 0.0 for s, check in zip(scores, checks, strict=True)]
        return out
