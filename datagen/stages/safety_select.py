"""Select safety data by behaviour (Command A report, 3.3.7).

Each completion is judged refusal, compliance or partial (judges.refusal). A row's preferred
behaviour (`prefer`, from its `should_refuse` label and its safety mode) picks the SFT
completion:

- `refuse`: a refusal **without apology** (the report calls apologies a dataset artifact). With
  `repair_apologies`, an apologising refusal is kept with its apology removed; with
  `fallback_refusal`, a row whose teacher never refused gets that fixed refusal (recorded as
  `chosen_origin: fallback`), else it gives no data (`drop_reason: no_refusal`).
- `comply`: a compliance (neither refusal nor partial), else no data (`no_compliance`).

The preference pair puts the chosen completion against one of the opposite behaviour
(compliance or partial for a should-refuse row, refusal or partial for a should-comply row);
with `apology_as_rejected`, a should-refuse row without one pairs its clean refusal against an
apologising one. With a `rewards` column the highest-reward candidate wins (and the
lowest-reward opposite is rejected); without, the first.

`scores` carries `should_refuse`, `mode`, `persona` and `prefer` so that the sft and
preference outputs (which keep only their kind's columns and `scores`) still say which set a
row belongs to. `metrics()` reports the two sets' sizes and ratio, the teacher's behaviour
rates before selection, and the apology rate of refusals before and after selection.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any, Literal

import pyarrow as pa
from pydantic import Field

from datagen.stages.base import BuildContext, Row, RowStage, finished_rows
from datagen.stages.registry import register_stage
from datagen.stages.selection import SELECTION_TYPES, SelectionStageSpec, selected_columns
from judges.refusal import classify_refusal, no_apology, strip_apology

SAFETY_SCORES_TYPE = pa.struct(
    [
        ("should_refuse", pa.bool_()),
        ("mode", pa.string()),
        ("persona", pa.string()),
        ("prefer", pa.string()),
        ("refusal_rate", pa.float64()),
        ("compliance_rate", pa.float64()),
        ("apology_rate", pa.float64()),
        ("n", pa.int64()),
    ]
)
OPPOSITE = {"refuse": ("compliance", "partial"), "comply": ("refusal", "partial")}


class SafetySelectStageSpec(SelectionStageSpec):
    """Choose a refusal without apology or a compliance, by each row's preferred behaviour."""

    type: Literal["safety_select"] = "safety_select"
    prefer: str = Field("prefer", description="Column: the preferred behaviour, `refuse` or `comply`.")
    should_refuse: str = Field("should_refuse", description="Column: the request is harmful (bool).")
    mode: str = Field("mode", description="Column: the safety mode of the row.")
    persona: str = Field("persona_id", description="Column: the persona of the row.")
    rewards: str | None = Field(
        None, description="Column of reward-model scores, one per completion; none: first wins."
    )
    languages: list[str] | None = Field(
        None, description="Refusal-rule languages (default: all the judge knows)."
    )
    max_refusal_words: int = Field(40, ge=0, description="Words a refusal may say besides refusing.")
    repair_apologies: bool = Field(True, description="Keep an apologising refusal with its apology removed.")
    fallback_refusal: str | None = Field(
        None, description="Refusal used when the teacher never refused a should-refuse row (none: no data)."
    )
    apology_as_rejected: bool = Field(
        True, description="Without an opposite behaviour, pair a clean refusal against an apologising one."
    )


@register_stage
class SafetySelectStage(RowStage[SafetySelectStageSpec]):
    """Writes prompt/messages/chosen/rejected, per-completion `behaviours` and `apologies`,
    `chosen_origin` (teacher, apology_removed, fallback), `drop_reason` and `scores`."""

    spec_class = SafetySelectStageSpec

    def __init__(self, spec: SafetySelectStageSpec, context: BuildContext | None = None) -> None:
        super().__init__(spec, context)
        columns = (spec.prompt, spec.completions, spec.prefer, spec.should_refuse, spec.mode, spec.persona)
        self.reads = (*columns, *([spec.rewards] if spec.rewards else []))
        self.writes = {
            **SELECTION_TYPES,
            "behaviours": pa.list_(pa.string()),
            "apologies": pa.list_(pa.bool_()),
            "chosen_origin": pa.string(),
            "drop_reason": pa.string(),
            "scores": SAFETY_SCORES_TYPE,
        }

    def _pick(self, indices: list[int], rewards: list[float] | None, best: bool) -> int | None:
        if not indices:
            return None
        if rewards is None:
            return indices[0]
        return (max if best else min)(indices, key=lambda i: rewards[i])

    def process_row(self, row: Row) -> Row:
        spec = self.spec
        prefer = row[spec.prefer]
        if prefer not in OPPOSITE:
            raise ValueError(f"column {spec.prefer!r} must be 'refuse' or 'comply', not {prefer!r}")
        texts = [c["text"] for c in row[spec.completions] or []]
        if not texts:
            raise ValueError("row has no completions")
        rewards = row[spec.rewards] if spec.rewards else None
        if rewards is not None and len(rewards) != len(texts):
            raise ValueError(f"{len(texts)} completions but {len(rewards)} rewards")
        verdicts = [
            classify_refusal(t, spec.languages, max_refusal_words=spec.max_refusal_words) for t in texts
        ]
        behaviours = [v.behaviour for v in verdicts]
        apologies = [v.apologises for v in verdicts]
        n = len(texts)
        refusals = [i for i in range(n) if behaviours[i] == "refusal"]
        prompt = row[spec.prompt]
        out: Row = selected_columns(prompt) | {
            "behaviours": behaviours,
            "apologies": apologies,
            "chosen_origin": None,
            "drop_reason": None,
            "scores": {
                "should_refuse": row[spec.should_refuse],
                "mode": row[spec.mode],
                "persona": row[spec.persona],
                "prefer": prefer,
                "refusal_rate": len(refusals) / n,
                "compliance_rate": behaviours.count("compliance") / n,
                "apology_rate": sum(apologies[i] for i in refusals) / len(refusals) if refusals else None,
                "n": n,
            },
        }
        chosen_text, origin = self._chosen(prefer, texts, behaviours, apologies, rewards)
        if chosen_text is None:
            return out | {"drop_reason": "no_refusal" if prefer == "refuse" else "no_compliance"}
        out |= selected_columns(prompt, chosen_text) | {"chosen_origin": origin}
        opposite = [i for i in range(n) if behaviours[i] in OPPOSITE[prefer]]
        rejected = self._pick(opposite, rewards, best=False)
        if rejected is None and prefer == "refuse" and spec.apology_as_rejected:
            rejected = self._pick([i for i in refusals if apologies[i]], rewards, best=False)
        if rejected is None:
            return out | {"drop_reason": "no_opposite_behaviour"}
        return out | selected_columns(prompt, chosen_text, (chosen_text, texts[rejected]))

    def _chosen(
        self,
        prefer: str,
        texts: list[str],
        behaviours: list[str],
        apologies: list[bool],
        rewards: list[float] | None,
    ) -> tuple[str | None, str | None]:
        """The preferred completion's text and where it came from, or (None, None)."""
        spec = self.spec
        n = len(texts)
        if prefer == "comply":
            best = self._pick([i for i in range(n) if behaviours[i] == "compliance"], rewards, best=True)
            return (texts[best], "teacher") if best is not None else (None, None)
        clean = [i for i in range(n) if behaviours[i] == "refusal" and not apologies[i]]
        best = self._pick(clean, rewards, best=True)
        if best is not None:
            return texts[best], "teacher"
        if spec.repair_apologies:
            for i in sorted(
                (i for i in range(n) if behaviours[i] == "refusal"),
                key=lambda i: -(rewards[i] if rewards else 0.0),
            ):
                repaired = strip_apology(texts[i], spec.languages)
                verdict = classify_refusal(repaired, spec.languages, max_refusal_words=spec.max_refusal_words)
                if repaired and verdict.behaviour == "refusal" and no_apology(repaired, spec.languages):
                    return repaired, "apology_removed"
        if spec.fallback_refusal:
            return spec.fallback_refusal, "fallback"
        return None, None

    def metrics(self, result: Any) -> dict[str, Any]:
        """Rows per set and their ratio, teacher behaviour before selection, apology rates."""
        columns = ["behaviours", "apologies", "scores", "messages", "chosen", "chosen_origin", "drop_reason"]
        rows = [r for r in finished_rows(result, columns) if r["behaviours"] is not None]
        return summarise_safety(rows)


def summarise_safety(rows: list[Row]) -> dict[str, Any]:
    """The metrics of selected safety rows (see `SafetySelectStage.metrics`)."""
    sets: dict[str, dict[str, Any]] = {}
    by_set: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_set["should_refuse" if row["scores"]["should_refuse"] else "should_comply"].append(row)
    for name, members in sorted(by_set.items()):
        behaviours = Counter(b for r in members for b in r["behaviours"])
        total = sum(behaviours.values()) or 1
        sets[name] = {
            "rows": len(members),
            "sft_rows": sum(r["messages"] is not None for r in members),
            "pairs": sum(r["chosen"] is not None for r in members),
            "teacher_rates": {
                b: round(behaviours[b] / total, 4) for b in ("refusal", "compliance", "partial")
            },
            "modes": dict(sorted(Counter(r["scores"]["mode"] for r in members).items())),
            "chosen_origin": dict(
                sorted(Counter(r["chosen_origin"] for r in members if r["chosen_origin"]).items())
            ),
            "drop_reasons": dict(
                sorted(Counter(r["drop_reason"] for r in members if r["drop_reason"]).items())
            ),
        }
    teacher_refusals = [
        a for r in rows for b, a in zip(r["behaviours"], r["apologies"], strict=True) if b == "refusal"
    ]
    chosen_refusals = [
        r["messages"][-1]["content"]
        for r in rows
        if r["messages"] is not None and r["scores"]["prefer"] == "refuse"
    ]
    refuse_sft = sets.get("should_refuse", {}).get("sft_rows", 0)
    comply_sft = sets.get("should_comply", {}).get("sft_rows", 0)
    return {
        "sets": sets,
        "ratio_refuse_to_comply": round(refuse_sft / comply_sft, 4) if comply_sft else None,
        "apology_rate_before": round(sum(teacher_refusals) / len(teacher_refusals), 4)
        if teacher_refusals
        else None,
        "apology_rate_after": (
            round(sum(not no_apology(t) for t in chosen_refusals) / len(chosen_refusals), 4)
            if chosen_refusals
            else None
        ),
    }
