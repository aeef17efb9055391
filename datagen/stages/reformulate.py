"""Keep an LLM's reformulation of a prompt when it still means the same (Command A report, 3.3.7).

A generate stage rewrites each prompt (in a persona's voice); this stage checks the rewrite and
writes the user turn the next generation gets: the reformulation when it passes, else the
original. The check is lexical and needs no model:

- **similarity**: the share of the original's content words (lower-cased, stop words dropped,
  cut to their first `stem` letters so "hacking"/"hacked" match) found in the rewrite; it must
  be at least `min_similarity` (the meaning is kept);
- **form**: the rewrite must differ from the original (word-trigram Jaccard below
  `max_copy_overlap`) and its length stay within `min_length_ratio`..`max_length_ratio`;
- **no refusal**: a teacher that refuses to rewrite a harmful request (judges.refusal) gives
  no reformulation.

Lexical similarity misses paraphrases with new words (a rewrite that keeps the meaning with
synonyms is dropped, never a changed meaning kept unless it keeps the content words): it errs on
the side of fewer reformulations.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Literal

import pyarrow as pa
from pydantic import Field

from datagen.stages.base import BuildContext, Row, RowStage, StageSpec, finished_rows
from datagen.stages.registry import register_stage
from judges.refusal import classify_refusal

_WORD = re.compile(r"\w+", re.UNICODE)
STOP_WORDS = frozenset(
    "the a an and or of to in on for with by at from as is are was were be been it its this that these "
    "those what which who whom how why when where can could would should will shall may might must do "
    "does did have has had you your yours i me my we our us they them their he she his her not no "
    "please tell give show explain write describe about into out up down so if then than there here "
    "le la les un une des du de et ou en au aux pour par sur dans est sont que qui quoi comment "
    "el los las unos unas del y o en por para con es son que como der die das ein eine und oder zu mit "
    "ist sind wie was".split()
)
_PREAMBLE_LINE = re.compile(r"^[^\n]{0,80}:\s*\n", re.UNICODE)


def content_words(text: str, stem: int = 5) -> set[str]:
    """Lower-cased words of `text` without stop words or digits-only words, cut to `stem` letters."""
    words = (w.lower() for w in _WORD.findall(text))
    return {w[:stem] for w in words if w not in STOP_WORDS and len(w) > 2 and not w.isdigit()}


def _trigrams(text: str) -> Counter[tuple[str, ...]]:
    words = [w.lower() for w in _WORD.findall(text)]
    return Counter(zip(words, words[1:], words[2:], strict=False))


def copy_overlap(a: str, b: str) -> float:
    """Jaccard overlap of the word trigrams of `a` and `b` (1.0: the same wording)."""
    ta, tb = _trigrams(a), _trigrams(b)
    if not ta and not tb:
        return 1.0 if a.strip().lower() == b.strip().lower() else 0.0
    union = sum((ta | tb).values())
    return sum((ta & tb).values()) / union if union else 0.0


def lexical_similarity(original: str, rewrite: str, stem: int = 5) -> float:
    """Share of the original's content words found in the rewrite (1.0 when it has none)."""
    words = content_words(original, stem)
    return len(words & content_words(rewrite, stem)) / len(words) if words else 1.0


def clean_rewrite(text: str) -> str:
    """The rewrite without a lead-in line ("Here is the rewritten request:") or wrapping quotes."""
    text = _PREAMBLE_LINE.sub("", text.strip(), count=1).strip()
    return text.strip("\"'“”«» \n")


class ReformulationCheckStageSpec(StageSpec):
    """Use a prompt's reformulation as the user turn when it keeps the meaning and changes the form."""

    type: Literal["reformulation_check"] = "reformulation_check"
    original: str = Field("prompt", description="Column holding the original prompt text.")
    reformulations: str = Field(
        "reformulations", description="Column of completions rewriting it; the first that passes is used."
    )
    output: str = Field(
        "user_prompt", description="Column for the user turn: the rewrite if kept, else the original."
    )
    min_similarity: float = Field(0.5, ge=0.0, le=1.0, description="Least share of content words kept.")
    max_copy_overlap: float = Field(
        0.8, ge=0.0, le=1.0, description="A rewrite this close to the original is a copy."
    )
    min_length_ratio: float = Field(
        0.5, gt=0.0, description="Shortest rewrite, as a multiple of the original's length."
    )
    max_length_ratio: float = Field(
        3.0, gt=0.0, description="Longest rewrite, as a multiple of the original's length."
    )
    stem: int = Field(5, ge=3, description="Letters a content word is cut to before matching.")


@register_stage
class ReformulationCheckStage(RowStage[ReformulationCheckStageSpec]):
    """Writes the user turn, `reformulated` (kept or not), `similarity` and `reformulation_drop`."""

    spec_class = ReformulationCheckStageSpec

    def __init__(self, spec: ReformulationCheckStageSpec, context: BuildContext | None = None) -> None:
        super().__init__(spec, context)
        self.reads = (spec.original, spec.reformulations)
        self.writes = {
            spec.output: pa.string(),
            "reformulated": pa.bool_(),
            "similarity": pa.float64(),
            "reformulation_drop": pa.string(),
        }

    def check(self, original: str, rewrite: str) -> tuple[float, str | None]:
        """The rewrite's similarity and why it is dropped (None: kept)."""
        spec = self.spec
        similarity = lexical_similarity(original, rewrite, spec.stem)
        ratio = len(rewrite) / max(1, len(original))
        if not rewrite:
            return similarity, "empty"
        if classify_refusal(rewrite).behaviour != "compliance":
            return similarity, "refused"
        if copy_overlap(original, rewrite) >= spec.max_copy_overlap:
            return similarity, "copy"
        if not spec.min_length_ratio <= ratio <= spec.max_length_ratio:
            return similarity, "length"
        if similarity < spec.min_similarity:
            return similarity, "meaning"
        return similarity, None

    def process_row(self, row: Row) -> Row:
        spec = self.spec
        original = row[spec.original]
        if not original:
            raise ValueError(f"column {spec.original!r} is empty")
        # The first rewrite that passes wins; if none does, the first one's verdict is recorded.
        checked = [
            (rewrite, *self.check(original, rewrite))
            for rewrite in (clean_rewrite(c["text"]) for c in row[spec.reformulations] or [])
        ] or [("", 0.0, "empty")]
        rewrite, similarity, drop = next((c for c in checked if c[2] is None), checked[0])
        return {
            spec.output: original if drop else rewrite,
            "reformulated": drop is None,
            "similarity": similarity,
            "reformulation_drop": drop,
        }

    def metrics(self, result: Any) -> dict[str, Any]:
        """Reformulations kept, and why the others were dropped."""
        drops: Counter[str] = Counter()
        kept = total = 0
        for row in finished_rows(result, ["reformulated", "reformulation_drop"]):
            if row["reformulated"] is None:
                continue
            total += 1
            kept += bool(row["reformulated"])
            if row["reformulation_drop"]:
                drops[row["reformulation_drop"]] += 1
        return {"reformulations": total, "kept": kept, "dropped": dict(sorted(drops.items()))}
