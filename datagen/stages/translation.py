"""Translation of verified Python problems into other languages (Command A report, 3.3.4:
"Python-only synthesis followed by translating code and unit tests").

Two stages around an ordinary render -> generate (the recipe `translate_code` wires them):

- `translation_targets` makes one row per Python problem and target language, with what the
  prompt needs: the language's name, the shape of its solution and tests (the sandbox's test
  format), and the entry function's name.
- `translation_check` reads each reply (datagen/stages/translation_targets.py: two fenced blocks,
  the solution and the tests) and keeps a translation only when, in the sandbox,
  1. the translated solution passes the translated tests (at least `min_tests` of them), and
  2. the translated tests fail on a broken variant of the translated solution (its entry
     function returns the zero value or throws), so vacuous tests (`assert(true)`) are dropped.
  A kept row is a `code` problem in the target language: the prompt restated for it, the
  translated tests, the translated solution as the reference, and its verdict. A dropped row
  keeps those columns null (a `code` output leaves it out) and says why in `translation`.

Every completion of a row is checked (so the counts per step are honest); the kept one is the
passing translation with the most tests. Per row, `translation` counts the completions that
survive each step; the stage sums them per language into the lineage (`metrics.stages.NAME`).

A row's result is kept in the stage-result cache (datagen/stage_cache.py), keyed by its replies'
texts, prompt, target and entry function, the stage's settings, its code (this module and the
translation helpers) and the sandbox; not when any of its runs timed out. Its metrics report the
hits (`stage_cache`).
"""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
from pydantic import Field, field_validator

from datagen.stage_cache import any_timeout, uncached_if
from datagen.stages.base import (
    LIGHT_TASK_CPUS,
    BuildContext,
    Row,
    RowResult,
    Stage,
    StageSpec,
    finished_rows,
)
from datagen.stages.code_problems import first_call
from datagen.stages.code_select import explode_rows
from datagen.stages.registry import register_stage
from datagen.stages.sandbox_worker import (
    SANDBOX_RESULT_MODULES,
    SandboxStage,
    SandboxStageSpec,
    SandboxWorker,
    check_sandbox,
)
from datagen.stages.translation_targets import (
    REASONS,
    TargetLanguage,
    check_targets,
    parse_reply,
    restate_prompt,
    target_language,
)
from sandbox.verdict import Verdict

if TYPE_CHECKING:
    import ray.data

PYTHON_ALIASES = ("python", "py", "python3")
STEPS = ("generated", "parsed", "solution_passes", "catches_broken")
CAUGHT = ("failed", "runtime_error", "timeout", "memory")  # the tests did not all pass
DETAIL_CHARS = 400

STATS_TYPE = pa.struct(
    [
        ("target", pa.string()),
        ("entry_point", pa.string()),
        *((step, pa.int64()) for step in STEPS),
        ("kept", pa.bool_()),
        ("tests", pa.int64()),  # tests of the kept translation (0 when none is kept)
        ("reason", pa.string()),  # why nothing is kept (one of REASONS), null when kept
        ("detail", pa.string()),
        ("broken_status", pa.string()),  # the kept tests' verdict on the broken variant
    ]
)

Run = Callable[[str, str, str], Verdict]  # (language, program, tests) -> verdict, in the sandbox


# ------------------------------------------------------------------ translation_targets


def entry_point_of(tests: str, solution: str) -> str | None:
    """The function a Python problem is about: the first one its tests call, else the first one
    its solution defines."""
    if name := first_call(tests):
        return name
    try:
        tree = ast.parse(solution)
    except SyntaxError:
        return None
    return next((node.name for node in tree.body if isinstance(node, ast.FunctionDef)), None)


class TranslationTargetsStageSpec(StageSpec):
    """One row per Python problem and target language, with what the translation prompt needs."""

    type: Literal["translation_targets"] = "translation_targets"
    languages: list[str] = Field(
        min_length=1, description="Target languages (javascript, cpp; sandbox aliases allowed)."
    )
    language: str = Field("language", description="Column naming each problem's language (must be Python).")
    solution: str = Field("solution", description="Column with the reference solution (Python).")
    tests: str = Field("tests", description="Column with the Python tests.")

    @field_validator("languages")
    @classmethod
    def _known_targets(cls, value: list[str]) -> list[str]:
        return check_targets(value)


@register_stage
class TranslationTargetsStage(Stage[TranslationTargetsStageSpec]):
    """Writes `target_language`, `target_language_name`, `translation_instructions` and
    `target_entry_point`, one copy of each problem per language; a problem that is not Python or
    lacks its solution or tests fails with the reason."""

    spec_class = TranslationTargetsStageSpec

    def __init__(self, spec: TranslationTargetsStageSpec, context: BuildContext | None = None) -> None:
        super().__init__(spec, context)
        self.targets = [target_language(name) for name in spec.languages]
        self.reads = (spec.language, spec.solution, spec.tests)
        self.writes = {
            "target_language": pa.string(),
            "target_language_name": pa.string(),
            "translation_instructions": pa.string(),
            "target_entry_point": pa.string(),
        }

    def targets_of(self, row: Row) -> list[Row]:
        """The per-language values for one problem.

        Raises:
            ValueError: the problem is not Python, or has no solution, tests or entry function.
        """
        spec = self.spec
        if str(row[spec.language] or "").lower() not in PYTHON_ALIASES:
            raise ValueError(f"translation starts from Python problems; got language {row[spec.language]!r}")
        solution, tests = row[spec.solution], row[spec.tests]
        if not solution or not str(solution).strip():
            raise ValueError("no reference solution to translate")
        if not tests or not str(tests).strip():
            raise ValueError("no tests to translate")
        entry = entry_point_of(tests, solution)
        if entry is None:
            raise ValueError("cannot tell which function the problem is about (no call in the tests)")
        return [
            {
                "target_language": target.name,
                "target_language_name": target.display,
                "translation_instructions": target.instructions.format(name=entry),
                "target_entry_point": entry,
            }
            for target in self.targets
        ]

    def apply(self, ds: ray.data.Dataset) -> ray.data.Dataset:
        name, reads, writes, select = self.name, self.reads, self.writes, self.targets_of

        def run(table: pa.Table) -> pa.Table:
            return explode_rows(table, name, reads, writes, select)

        return ds.map_batches(run, batch_format="pyarrow", num_cpus=LIGHT_TASK_CPUS)


# ------------------------------------------------------------------ translation_check


@dataclass
class Outcome:
    """How far one reply got, and what it made."""

    step: int  # index in STEPS of the last step it survived
    reason: str | None = None
    detail: str = ""
    solution: str | None = None
    tests: str | None = None
    verdict: Verdict | None = None  # the translated solution on the translated tests
    broken_status: str | None = None

    @property
    def kept(self) -> bool:
        """Whether the translation passed every check."""
        return self.reason is None


def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 3] + "..."


def _failure(verdict: Verdict) -> str:
    failed = [t for t in verdict.tests if not t.passed]
    where = f"; first failure: {failed[0].name}" + (f": {failed[0].message}" if failed[0].message else "")
    summary = f"{verdict.status}, {verdict.passed}/{verdict.total} tests passed"
    return _clip(summary + (where if failed else "") + (f"; {verdict.message}" if verdict.message else ""))


def check_translation(
    text: str, language: TargetLanguage, entry_point: str, run: Run, *, min_tests: int = 1
) -> Outcome:
    """Check one translation reply: it parses, its solution passes its tests, its tests catch the
    broken variant. Every program runs through `run` (the sandbox); nothing runs here.

    Raises:
        ExecutionFailed: the sandbox itself failed (the row is retry-worthy).
    """
    parsed = parse_reply(text, language)
    if parsed.reason is not None:
        return Outcome(0, parsed.reason, parsed.detail)
    solution, tests = parsed.solution or "", parsed.tests or ""
    verdict = run(language.name, solution, tests)
    check_sandbox([verdict])
    outcome = Outcome(1, solution=solution, tests=tests, verdict=verdict)
    if verdict.status != "passed":
        outcome.reason, outcome.detail = "solution_fails", _failure(verdict)
        return outcome
    if verdict.total < min_tests:
        outcome.reason = "too_few_tests"
        outcome.detail = f"{verdict.total} tests, {min_tests} needed"
        return outcome
    outcome.step = 2
    variants = language.broken_variants(solution, entry_point)
    if not variants:
        outcome.reason = "no_entry_point"
        outcome.detail = f"the solution does not define `{entry_point}`"
        return outcome
    messages = []
    for variant in variants:
        broken = run(language.name, variant, tests)
        check_sandbox([broken])
        if broken.status in ("compile_error", "invalid_input"):
            messages.append(broken.message)
            continue
        outcome.broken_status = broken.status
        if broken.status in CAUGHT:
            outcome.step = 3
        else:
            outcome.reason = "broken_not_caught"
            outcome.detail = (
                f"the tests pass on a broken `{entry_point}` ({broken.status}): they check nothing"
            )
        return outcome
    outcome.reason, outcome.detail = "broken_does_not_compile", _clip(messages[-1] if messages else "")
    return outcome


class TranslationCheckStageSpec(SandboxStageSpec):
    """Keep translations whose solution passes their tests and whose tests catch a broken variant."""

    type: Literal["translation_check"] = "translation_check"
    completions: str = Field("completions", description="Column of replies, each the solution and the tests.")
    prompt: str = Field("prompt", description="Column with the Python problem statement (restated here).")
    target: str = Field("target_language", description="Column naming the target language.")
    entry_point: str = Field("target_entry_point", description="Column naming the entry function.")
    min_tests: int = Field(1, ge=1, description="Tests a kept translation must have, at least.")
    prompt_tests: bool = Field(
        True,
        description="Quote the translated tests in the restated prompt as MBPP does (else: the name).",
    )
    batch_size: int = Field(4, ge=1, description="Rows per batch sent to an actor.")


class _TranslationWorker(SandboxWorker):
    """A Ray actor holding one sandbox; checks a batch's rows on its threads."""

    stage: TranslationCheckStage

    def process_rows(self, rows: list[Row]) -> list[RowResult]:
        from sandbox.verify import verify

        limits = self.stage.spec.sandbox.limits.to_limits()

        def run(language: str, program: str, tests: str) -> Verdict:
            return verify(self.sandbox, language, program, tests, extract=False, limits=limits)

        return self.map_rows(lambda row: self.stage.check_row(row, run), rows)


@register_stage
class TranslationCheckStage(SandboxStage[TranslationCheckStageSpec]):
    """Writes `prompt`, `language`, `tests`, `solution`, `verdict`, `pass_rate` (the translated
    problem, or null when no reply survives) and `translation` (counts per step and the reason)."""

    spec_class = TranslationCheckStageSpec
    worker = _TranslationWorker
    read_fields = frozenset({"completions", "prompt", "target", "entry_point"})
    result_modules = (*SANDBOX_RESULT_MODULES, "datagen.stages.translation_targets")

    def __init__(self, spec: TranslationCheckStageSpec, context: BuildContext | None = None) -> None:
        super().__init__(spec, context)
        self.reads = (spec.completions, spec.prompt, spec.target, spec.entry_point)
        self.writes = {
            "prompt": pa.string(),
            "language": pa.string(),
            "tests": pa.string(),
            "solution": pa.string(),
            "verdict": pa.string(),
            "pass_rate": pa.float64(),
            "translation": STATS_TYPE,
        }

    def check_row(self, row: Row, run: Run) -> Row:
        """Check every reply of one row with `run` (the sandbox) and keep the best translation."""
        spec = self.spec
        language = target_language(str(row[spec.target]))
        entry = str(row[spec.entry_point])
        texts = [c["text"] if isinstance(c, dict) else str(c) for c in row[spec.completions] or []]
        outcomes = [check_translation(t, language, entry, run, min_tests=spec.min_tests) for t in texts]
        kept = [o for o in outcomes if o.kept]
        best = max(kept, key=lambda o: o.verdict.total if o.verdict else 0) if kept else None
        furthest = max(outcomes, key=lambda o: (o.step, REASONS.index(o.reason or "no_code")), default=None)
        shown = best or furthest
        # Every run's status: the solution on its tests, and the broken variant that answered.
        timed_out = any_timeout(
            status for o in outcomes for status in (o.verdict.status if o.verdict else None, o.broken_status)
        )
        stats = {
            "target": language.name,
            "entry_point": entry,
            "generated": len(outcomes),
            "parsed": sum(o.step >= 1 for o in outcomes),
            "solution_passes": sum(o.step >= 2 for o in outcomes),
            "catches_broken": len(kept),
            "kept": best is not None,
            "tests": best.verdict.total if best and best.verdict else 0,
            "reason": None if best else (furthest.reason if furthest else "no_code"),
            "detail": None if best else (furthest.detail if furthest else "no reply"),
            "broken_status": shown.broken_status if shown else None,
        }
        if best is None or best.verdict is None:
            return uncached_if(timed_out, dict.fromkeys(self.writes) | {"translation": stats})
        tests = best.tests if spec.prompt_tests else None
        return uncached_if(
            timed_out,
            {
                "prompt": restate_prompt(str(row[spec.prompt] or ""), language, tests, entry),
                "language": language.name,
                "tests": best.tests,
                "solution": best.solution,
                "verdict": best.verdict.status,
                "pass_rate": best.verdict.pass_rate,
                "translation": stats,
            },
        )

    def result_metrics(self, result: ray.data.Dataset) -> dict[str, Any]:
        """Per target language: rows, kept rows, completions surviving each step, drop reasons
        (`metrics` adds the stage-result cache's hits)."""
        stats = [r["translation"] for r in finished_rows(result, ["translation"]) if r["translation"]]
        if not stats:
            return {}
        by_language: dict[str, dict[str, Any]] = {}
        for target in sorted({s["target"] for s in stats}):
            rows = [s for s in stats if s["target"] == target]
            steps = {step: sum(s[step] for s in rows) for step in STEPS}
            by_language[target] = {
                "rows": len(rows),
                "kept": sum(s["kept"] for s in rows),
                **steps,
                "survival": {
                    f"{later}_of_{earlier}": round(steps[later] / steps[earlier], 4)
                    if steps[earlier]
                    else 0.0
                    for earlier, later in zip(STEPS, STEPS[1:], strict=False)
                },
                "reasons": dict(Counter(s["reason"] for s in rows if s["reason"])),
            }
        return {
            "rows": len(stats),
            "kept": sum(s["kept"] for s in stats),
            **{step: sum(s[step] for s in stats) for step in STEPS},
            "by_language": by_language,
        }
