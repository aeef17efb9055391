"""Select execution-verified code: SFT rows above a pass-fraction threshold, preference pairs by
AceCoder's rule, an optional reward-model veto.

Reads the `execute` stage's output (one reward per completion: the fraction of tests passed,
-1.0 without a code block) and writes one output row per SFT sample and per pair: a prompt with
several passing completions becomes several rows (`max_sft_per_prompt`, `max_pairs_per_prompt`),
each carrying the source row's columns, so the job's `sft` and `preference` outputs take them as
they take best-of-N's. Passing completions that are the same program (SQL: the same canonical
query, see judges/code/sql.py; other languages: the same code up to whitespace) count once.

Pairs (defaults from AceCoder, arXiv 2502.01718): chosen reward >= `chosen_min`, chosen minus
rejected >= `min_margin`, rejected > `rejected_above` (null: any, the -1.0 of "no code" too).
With `rm_scores` (a `score` stage's per-completion rewards), a pair whose rejected completion
the reward model scores above the chosen one is dropped.

A row none of whose completions could be judged (every verdict `invalid_input`: no tests, tests
that do not parse, an unknown language) fails with the verdict's reason and goes to the dead
letters.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
from pydantic import Field, field_validator

from datagen.stages.base import (
    ERROR_COLUMN,
    LIGHT_TASK_CPUS,
    BuildContext,
    Row,
    Stage,
    mark_failed,
    run_rows_isolated,
    set_column,
)
from datagen.stages.registry import register_stage
from datagen.stages.selection import SELECTION_TYPES, SelectionStageSpec, selected_columns
from judges.code.sql import dedupe_key as sql_dedupe_key
from sandbox.extract import extract_code
from sandbox.languages import get_runner, language_names

if TYPE_CHECKING:
    import ray.data

EPSILON = 1e-9  # rewards are fractions: 1.0 - 0.6 must count as a margin of 0.4
_SPACES = re.compile(r"\s+")

SCORES_TYPE = pa.struct(
    [
        ("execution_best", pa.float64()),
        ("execution_worst", pa.float64()),
        ("execution_mean", pa.float64()),
        ("chosen_reward", pa.float64()),
        ("rejected_reward", pa.float64()),
        ("n", pa.int64()),
        ("passing", pa.int64()),
        ("no_code", pa.int64()),
        ("rm_vetoed", pa.int64()),
    ]
)


def check_languages(languages: list[str] | None) -> list[str] | None:
    """Every name must be a sandbox language (or alias), so a typo fails when the spec loads."""
    if languages is None:
        return None
    for name in languages:
        try:
            get_runner(name)
        except KeyError:
            raise ValueError(f"unknown language {name!r}; known: {', '.join(language_names())}") from None
    return [get_runner(name).name for name in languages]


class CodeSelectStageSpec(SelectionStageSpec):
    """SFT rows and preference pairs from execution rewards (AceCoder thresholds)."""

    type: Literal["code_select"] = "code_select"
    scores: str = Field("completion_scores", description="Column of execution rewards, one per completion.")
    verdicts: str = Field("completion_verdicts", description="Column of verdicts, one per completion.")
    language: str = Field("language", description="Column naming each row's language.")
    rm_scores: str | None = Field(
        None, description="Column of reward-model scores per completion; pairs it disagrees with are dropped."
    )
    languages: list[str] | None = Field(
        None, description="Languages accepted (null: any the sandbox runs); another one fails its row."
    )
    min_sft_reward: float = Field(1.0, ge=0.0, le=1.0, description="Pass fraction an SFT completion needs.")
    max_sft_per_prompt: int = Field(1, ge=0, description="SFT rows per prompt at most (best first).")
    chosen_min: float = Field(0.8, ge=0.0, le=1.0, description="Reward a chosen completion needs.")
    min_margin: float = Field(0.4, ge=0.0, description="Chosen reward minus rejected reward, at least.")
    rejected_above: float | None = Field(
        0.0, description="A rejected completion's reward must exceed this (null: any, no-code -1.0 too)."
    )
    max_pairs_per_prompt: int = Field(1, ge=0, description="Preference pairs per prompt at most.")

    _languages = field_validator("languages")(classmethod(lambda cls, value: check_languages(value)))


def program_key(language: str, text: str) -> str:
    """What makes two passing completions the same program (for dedupe)."""
    try:
        runner = get_runner(language)
    except KeyError:
        return _SPACES.sub(" ", text.strip())
    code = extract_code(text, runner.aliases) or text
    if runner.name == "sql":
        return sql_dedupe_key(code)
    return _SPACES.sub(" ", code.strip())


@register_stage
class CodeSelectStage(Stage[CodeSelectStageSpec]):
    """One row per SFT sample and per pair (at least one row per prompt), from execution rewards."""

    spec_class = CodeSelectStageSpec

    def __init__(self, spec: CodeSelectStageSpec, context: BuildContext | None = None) -> None:
        super().__init__(spec, context)
        self.reads = tuple(
            c
            for c in (
                spec.prompt,
                spec.completions,
                spec.scores,
                spec.verdicts,
                spec.language,
                spec.rm_scores,
            )
            if c is not None
        )
        self.writes = {**SELECTION_TYPES, "scores": SCORES_TYPE}

    def select(self, row: Row) -> list[Row]:
        """The output rows for one input row (at least one; raises for a row that cannot be judged)."""
        spec = self.spec
        completions, rewards = row[spec.completions] or [], row[spec.scores] or []
        verdicts = row[spec.verdicts] or []
        if not completions or len(completions) != len(rewards) or len(verdicts) != len(rewards):
            raise ValueError(
                f"{len(completions)} completions, {len(rewards)} rewards, {len(verdicts)} verdicts"
            )
        language = str(row[spec.language] or "")
        if spec.languages is not None and _canonical_language(language) not in spec.languages:
            raise ValueError(f"language {language!r} is not one of {spec.languages}")
        judged = [
            i for i, v in enumerate(verdicts) if v["status"] != "invalid_input" and rewards[i] is not None
        ]
        if not judged:
            raise ValueError(f"the problem cannot be judged: {verdicts[0]['message']}")
        rm = row[spec.rm_scores] if spec.rm_scores else None
        if rm is not None and len(rm) != len(rewards):
            raise ValueError(f"{len(rm)} reward-model scores for {len(rewards)} completions")
        prompt = row[spec.prompt]
        texts = [c["text"] if isinstance(c, dict) else str(c) for c in completions]
        by_reward = sorted(judged, key=lambda i: (-rewards[i], i))
        sft: list[int] = []
        seen: set[str] = set()
        for i in by_reward:
            if rewards[i] + EPSILON < spec.min_sft_reward or len(sft) >= spec.max_sft_per_prompt:
                break
            key = program_key(language, texts[i])
            if key not in seen:
                seen.add(key)
                sft.append(i)
        pairs, vetoed = self._pairs(judged, rewards, rm)
        values = [rewards[i] for i in judged]
        base_scores = {
            "execution_best": max(values),
            "execution_worst": min(values),
            "execution_mean": sum(values) / len(values),
            "n": len(rewards),
            "passing": sum(rewards[i] + EPSILON >= spec.min_sft_reward for i in judged),
            "no_code": sum(v["status"] == "no_code" for v in verdicts),
            "rm_vetoed": vetoed,
        }
        out: list[Row] = []
        for k in range(max(1, len(sft), len(pairs))):
            pair = pairs[k] if k < len(pairs) else None
            sft_text = texts[sft[k]] if k < len(sft) else None
            out.append(
                selected_columns(prompt, sft_text, (texts[pair[0]], texts[pair[1]]) if pair else None)
                | {
                    "scores": base_scores
                    | {
                        "chosen_reward": rewards[pair[0]] if pair else None,
                        "rejected_reward": rewards[pair[1]] if pair else None,
                    }
                }
            )
        return out

    def _pairs(
        self, judged: list[int], rewards: list[float], rm: list[float] | None
    ) -> tuple[list[tuple[int, int]], int]:
        """Greedy AceCoder pairs: the best chosen with the worst allowed rejected, each used once."""
        spec = self.spec
        chosen = sorted(
            (i for i in judged if rewards[i] + EPSILON >= spec.chosen_min), key=lambda i: -rewards[i]
        )
        rejected = sorted(
            (i for i in judged if spec.rejected_above is None or rewards[i] > spec.rejected_above + EPSILON),
            key=lambda i: rewards[i],
        )
        pairs: list[tuple[int, int]] = []
        used: set[int] = set()
        vetoed = 0
        for c in chosen:
            if len(pairs) >= spec.max_pairs_per_prompt or c in used:
                continue
            for r in rejected:
                if r in used or r == c or rewards[c] - rewards[r] + EPSILON < spec.min_margin:
                    continue
                if rm is not None and rm[r] > rm[c]:
                    vetoed += 1
                    continue
                pairs.append((c, r))
                used.update((c, r))
                break
        return pairs, vetoed

    def metrics(self, result: ray.data.Dataset) -> dict[str, Any]:
        """Problems, completions, pass rate and no-code rate by language, SFT rows and pairs (lineage)."""
        spec = self.spec
        columns = ["id", spec.language, spec.verdicts, "messages", "chosen", "scores", ERROR_COLUMN]
        seen: set[str] = set()
        by_language: dict[str, dict[str, float]] = {}
        for batch in result.select_columns(columns).iter_batches(batch_format="pyarrow"):
            for row in batch.to_pylist():
                if row[ERROR_COLUMN] is not None or row["scores"] is None:
                    continue
                counts = by_language.setdefault(
                    str(row[spec.language]),
                    {"problems": 0, "completions": 0, "passed": 0, "no_code": 0, "sft_rows": 0, "pairs": 0},
                )
                counts["sft_rows"] += row["messages"] is not None
                counts["pairs"] += row["chosen"] is not None
                if row["id"] in seen:  # an exploded copy of a problem already counted
                    continue
                seen.add(row["id"])
                verdicts = row[spec.verdicts] or []
                counts["problems"] += 1
                counts["completions"] += len(verdicts)
                counts["passed"] += sum(v["status"] == "passed" for v in verdicts)
                counts["no_code"] += sum(v["status"] == "no_code" for v in verdicts)
        for counts in by_language.values():
            total = counts["completions"] or 1
            counts["pass_rate"] = round(counts["passed"] / total, 4)
            counts["no_code_rate"] = round(counts["no_code"] / total, 4)
        return {"by_language": by_language} if by_language else {}

    def apply(self, ds: ray.data.Dataset) -> ray.data.Dataset:
        name, reads, writes, select = self.name, self.reads, self.writes, self.select

        def run(table: pa.Table) -> pa.Table:
            return explode_rows(table, name, reads, writes, select)

        return ds.map_batches(run, batch_format="pyarrow", num_cpus=LIGHT_TASK_CPUS)


def _canonical_language(language: str) -> str:
    try:
        return get_runner(language).name
    except KeyError:
        return language


def explode_rows(
    table: pa.Table, stage_name: str, reads: tuple[str, ...], writes: dict[str, pa.DataType], select: Any
) -> pa.Table:
    """Replace each unfailed row with the rows `select` makes of it (copies of the row with the
    written columns set); a row that raises is kept once and marked failed."""
    errors = table[ERROR_COLUMN].to_pylist()
    pending = [i for i, error in enumerate(errors) if error is None]
    rows = table.select(list(reads)).take(pending).to_pylist() if pending else []
    results = dict(zip(pending, run_rows_isolated(rows, select), strict=True))
    indices: list[int] = []
    values: dict[str, list[Any]] = {name: [] for name in writes}
    failures: dict[int, str] = {}
    for index in range(table.num_rows):
        result = results.get(index)
        produced = result if isinstance(result, list) else [None]
        if isinstance(result, Exception):
            failures[len(indices)] = f"{type(result).__name__}: {result}"
        for out in produced:
            indices.append(index)
            for name in writes:
                values[name].append(out[name] if out is not None else None)
    exploded = table.take(pa.array(indices, type=pa.int64()))
    for name, arrow_type in writes.items():
        exploded = set_column(exploded, name, pa.array(values[name], type=arrow_type))
    return mark_failed(exploded, failures, stage_name)
