"""Select by reward-model score, verifier score, or both (arbitrage and reward best-of-N).

Among a row's eligible completions (in the right language, from the allowed teacher), the best
becomes SFT data and best vs worst a preference pair:

- `rank_by: reward`: ranked by the reward model; `verifier`: by the verifier score; `both`: the
  reward model ranks among the completions that pass the verifiers (score >= `verifier_pass`),
  and a failing completion ranks below every passing one.
- A prompt whose best reward is below `min_reward`, or whose mean reward is below
  `min_mean_reward`, gives no data (Command A, 3.5); a pair whose two sides score the same
  (within `min_margin`) is skipped; with `drop_disagreements`, so is a pair where the reward
  model and the verifier prefer different sides.
- `only_teacher` keeps one teacher's completions: the single-teacher baseline of arbitrage.

Every row records why it gave no SFT row or no pair (`drop_reason`), which teacher won, and each
teacher's best reward; `metrics()` sums them into the job's lineage: per language and teacher,
the share of prompts each teacher won ("win share"), and the chosen reward against the single
best teacher's.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
from pydantic import Field, model_validator

from datagen.stages.base import ERROR_COLUMN, BuildContext, Row, RowStage, StageSpec
from datagen.stages.registry import register_stage
from datasets_registry.kinds import MESSAGES_TYPE

if TYPE_CHECKING:
    import ray.data

TEACHER_BEST_TYPE = pa.list_(pa.struct([("teacher", pa.string()), ("reward", pa.float64())]))
SCORES_TYPE = pa.struct(
    [
        ("reward_best", pa.float64()),
        ("reward_worst", pa.float64()),
        ("reward_mean", pa.float64()),
        ("verifier_best", pa.float64()),
        ("n", pa.int64()),
        ("eligible", pa.int64()),
    ]
)


class RankSelectStageSpec(StageSpec):
    """Pick the best completion (SFT) and best vs worst (preference) by reward and/or verifier."""

    type: Literal["rank_select"] = "rank_select"
    prompt: str = Field("prompt_messages", description="Column holding the prompt conversation.")
    completions: str = Field("completions", description="Column of completions.")
    rewards: str | None = Field("rewards", description="Column of reward-model scores, one per completion.")
    verifier: str | None = Field(None, description="Column of verifier scores, one per completion.")
    rank_by: Literal["reward", "verifier", "both"] = Field(
        "reward", description="Rank by reward, by verifier, or by reward among verifier-passing completions."
    )
    verifier_pass: float = Field(1.0, description="A verifier score at least this passes (rank_by: both).")
    language_ok: str | None = Field(
        None, description="Column of per-completion language flags; flagged-false ones are never chosen."
    )
    teachers: str | None = Field(None, description="Column naming each completion's teacher (win share).")
    language: str | None = Field(None, description="Column grouping the win share (e.g. language).")
    only_teacher: str | None = Field(None, description="Consider only this teacher's completions (baseline).")
    min_reward: float | None = Field(
        None, description="Prompts whose best reward is below this give no data."
    )
    min_verifier: float | None = Field(
        None, description="Prompts whose chosen completion's verifier score is below this give no data."
    )
    min_mean_reward: float | None = Field(
        None, description="Prompts whose mean reward (eligible completions) is below this give no data."
    )
    min_margin: float = Field(0.0, ge=0.0, description="A pair needs best - worst > this; ties are skipped.")
    drop_disagreements: bool = Field(
        False, description="Skip pairs where the reward model and the verifier prefer different sides."
    )

    @model_validator(mode="after")
    def _columns_for_mode(self) -> RankSelectStageSpec:
        if self.rank_by in ("reward", "both") and not self.rewards:
            raise ValueError(f"rank_by {self.rank_by!r} needs a `rewards` column")
        if self.rank_by in ("verifier", "both") and not self.verifier:
            raise ValueError(f"rank_by {self.rank_by!r} needs a `verifier` column")
        if self.drop_disagreements and not (self.rewards and self.verifier):
            raise ValueError("drop_disagreements needs both `rewards` and `verifier`")
        if (self.min_reward is not None or self.min_mean_reward is not None) and not self.rewards:
            raise ValueError("min_reward and min_mean_reward need a `rewards` column")
        if self.min_verifier is not None and not self.verifier:
            raise ValueError("min_verifier needs a `verifier` column")
        if self.only_teacher and not self.teachers:
            raise ValueError("only_teacher needs a `teachers` column")
        return self


@register_stage
class RankSelectStage(RowStage[RankSelectStageSpec]):
    """Best (SFT) and best vs worst (preference) among eligible completions, with drop reasons."""

    spec_class = RankSelectStageSpec

    def __init__(self, spec: RankSelectStageSpec, context: BuildContext | None = None) -> None:
        super().__init__(spec, context)
        optional = (spec.rewards, spec.verifier, spec.language_ok, spec.teachers, spec.language)
        self.reads = (spec.prompt, spec.completions, *(c for c in optional if c))
        self.writes = {
            "prompt": MESSAGES_TYPE,
            "messages": MESSAGES_TYPE,
            "chosen": MESSAGES_TYPE,
            "rejected": MESSAGES_TYPE,
            "scores": SCORES_TYPE,
            "chosen_teacher": pa.string(),
            "rejected_teacher": pa.string(),
            "teacher_best": TEACHER_BEST_TYPE,
            "drop_reason": pa.string(),
        }

    def _key(self, reward: float | None, verified: float | None) -> tuple[float, ...]:
        spec = self.spec
        if spec.rank_by == "reward":
            return (reward,)  # type: ignore[return-value]
        if spec.rank_by == "verifier":
            return (verified,)  # type: ignore[return-value]
        return (float(verified >= spec.verifier_pass), reward)  # type: ignore[operator, return-value]

    def process_row(self, row: Row) -> Row:
        spec = self.spec
        completions = row[spec.completions] or []
        n = len(completions)
        columns = {c: row[c] for c in (spec.rewards, spec.verifier, spec.language_ok, spec.teachers) if c}
        for column, values in columns.items():
            if values is None or len(values) != n:
                raise ValueError(f"{n} completions but {len(values or [])} values in {column!r}")
        rewards = row[spec.rewards] if spec.rewards else [None] * n
        verified = row[spec.verifier] if spec.verifier else [None] * n
        teachers = row[spec.teachers] if spec.teachers else [None] * n
        ok = row[spec.language_ok] if spec.language_ok else [True] * n
        eligible = [
            i for i in range(n) if ok[i] and (spec.only_teacher is None or teachers[i] == spec.only_teacher)
        ]
        teacher_best: dict[str, float] = {}
        if spec.teachers and spec.rewards:
            for i in eligible:
                teacher_best[teachers[i]] = max(teacher_best.get(teachers[i], float("-inf")), rewards[i])
        out: Row = {
            "prompt": row[spec.prompt],
            "messages": None,
            "chosen": None,
            "rejected": None,
            "chosen_teacher": None,
            "rejected_teacher": None,
            "teacher_best": [{"teacher": t, "reward": r} for t, r in sorted(teacher_best.items())],
            "drop_reason": None,
        }
        scores: dict[str, Any] = {"n": n, "eligible": len(eligible)}
        if not eligible:
            return out | {"scores": scores, "drop_reason": "no_eligible_completion"}
        # max/min keep the first of equal keys, so the choice is deterministic.
        keys = {i: self._key(rewards[i], verified[i]) for i in eligible}
        best, worst = max(eligible, key=keys.__getitem__), min(eligible, key=keys.__getitem__)
        if spec.rewards:
            eligible_rewards = [rewards[i] for i in eligible]
            scores |= {
                "reward_best": rewards[best],
                "reward_worst": rewards[worst],
                "reward_mean": sum(eligible_rewards) / len(eligible),
            }
        if spec.verifier:
            scores["verifier_best"] = verified[best]
        out |= {"scores": scores, "chosen_teacher": teachers[best]}
        reason = self._drop_reason(best, rewards, verified, scores)
        if reason:
            return out | {"drop_reason": reason}

        def turn(index: int) -> list[dict[str, str]]:
            return [{"role": "assistant", "content": completions[index]["text"]}]

        out["messages"] = row[spec.prompt] + turn(best)
        reason = self._pair_reason(best, worst, rewards, verified)
        if reason:
            return out | {"drop_reason": reason}
        return out | {"chosen": turn(best), "rejected": turn(worst), "rejected_teacher": teachers[worst]}

    def _drop_reason(
        self, best: int, rewards: list[float | None], verified: list[float | None], scores: dict[str, Any]
    ) -> str | None:
        """Why the prompt gives no data at all, or None."""
        spec = self.spec
        if spec.rank_by == "both" and verified[best] < spec.verifier_pass:  # type: ignore[operator]
            return "no_completion_passes_verifier"
        if spec.min_verifier is not None and verified[best] < spec.min_verifier:  # type: ignore[operator]
            return "verifier_below_threshold"
        if spec.min_reward is not None and scores["reward_best"] < spec.min_reward:
            return "best_reward_below_threshold"
        if spec.min_mean_reward is not None and scores["reward_mean"] < spec.min_mean_reward:
            return "mean_reward_below_threshold"
        return None

    def _pair_reason(
        self, best: int, worst: int, rewards: list[float | None], verified: list[float | None]
    ) -> str | None:
        """Why the prompt gives no preference pair, or None."""
        spec = self.spec
        primary = verified if spec.rank_by == "verifier" else rewards
        if best == worst or primary[best] - primary[worst] <= spec.min_margin:  # type: ignore[operator]
            if spec.rank_by != "both" or verified[best] == verified[worst]:
                return "tie"
        if spec.drop_disagreements:
            reward_gap = rewards[best] - rewards[worst]  # type: ignore[operator]
            verifier_gap = verified[best] - verified[worst]  # type: ignore[operator]
            if reward_gap * verifier_gap < 0:
                return "reward_verifier_disagree"
        return None

    def metrics(self, result: ray.data.Dataset) -> dict[str, Any]:
        """Win share per group and teacher, drop reasons, chosen vs single-best-teacher reward."""
        columns = [
            "chosen_teacher",
            "teacher_best",
            "drop_reason",
            "scores",
            "messages",
            "chosen",
            ERROR_COLUMN,
        ]
        group = self.spec.language
        if group:
            columns.append(group)
        rows: list[Row] = []
        for batch in result.select_columns(columns).iter_batches(batch_format="pyarrow"):
            rows += [r for r in batch.to_pylist() if r[ERROR_COLUMN] is None]
        return summarise(rows, group)


def summarise(rows: list[Row], group: str | None) -> dict[str, Any]:
    """The metrics of selected rows (see `RankSelectStage.metrics`)."""
    wins: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    drops: dict[str, int] = defaultdict(int)
    teacher_rewards: dict[str, list[tuple[int, float]]] = defaultdict(list)
    chosen: dict[int, float] = {}
    for index, row in enumerate(rows):
        if row["drop_reason"]:
            drops[row["drop_reason"]] += 1
        if row["chosen_teacher"] is not None:
            wins[str(row[group]) if group else "all"][row["chosen_teacher"]] += 1
        for best in row["teacher_best"] or []:
            teacher_rewards[best["teacher"]].append((index, best["reward"]))
        if (row["scores"] or {}).get("reward_best") is not None:
            chosen[index] = row["scores"]["reward_best"]
    metrics: dict[str, Any] = {
        "rows": len(rows),
        "sft_rows": sum(r["messages"] is not None for r in rows),
        "pairs": sum(r["chosen"] is not None for r in rows),
        "dropped": dict(sorted(drops.items())),
    }
    if wins:
        metrics["win_share"] = {
            g: {t: round(c / sum(counts.values()), 4) for t, c in sorted(counts.items())}
            for g, counts in sorted(wins.items())
        }
        metrics["wins"] = {g: dict(sorted(counts.items())) for g, counts in sorted(wins.items())}
    if teacher_rewards and chosen:
        means = {t: sum(r for _, r in v) / len(v) for t, v in teacher_rewards.items()}
        single = max(means, key=means.__getitem__)
        same_rows = [i for i, _ in teacher_rewards[single] if i in chosen]
        metrics["teacher_mean_best_reward"] = {t: round(m, 4) for t, m in sorted(means.items())}
        metrics["single_best_teacher"] = single
        metrics["chosen_vs_single_best"] = {
            "rows": len(same_rows),
            "chosen_mean_reward": round(sum(chosen[i] for i in same_rows) / max(1, len(same_rows)), 4),
            "single_best_mean_reward": round(
                sum(r for i, r in teacher_rewards[single] if i in chosen) / max(1, len(same_rows)), 4
            ),
        }
    return metrics
