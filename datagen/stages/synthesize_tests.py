"""Synthetic unit tests that must catch mutants (Command A report, 3.3.4).

A model writes `unittest.TestCase` tests for a problem (the `generate` stage's completions, one
fenced Python block each); every test method is one test. A test is kept only when

1. it parses (its block is valid Python; checked here, nothing is run),
2. the reference solution passes it, in the sandbox, and
3. it fails on at least one mutant of the reference (judges/code/mutation.py), in the sandbox.

A mutant counts as caught by a test only when the run finished every test (status `failed`) and
that test failed: a mutant that crashes on import or times out tells nothing about any single
test, so it kills none. Free-standing asserts and `def test_*()` functions are tests too (the
sandbox's Python format), so known suites such as MBPP's asserts go through the same validator.

A sample needs `min_tests` kept tests (default 4); its kept tests are written as one module
(`output`, each completion's classes renamed apart), with the reference's verdict on them. Every
row records the survival of its tests per step and its mutation score (`test_synthesis`), and
the stage sums them into the dataset's lineage metrics.

A row's result is kept in the stage-result cache (datagen/stage_cache.py), keyed by its
completions' texts, reference, the stage's settings (the mutation operators as expanded), this
module's and the mutation operators' source and the sandbox; not when any of its runs (on the
reference or a mutant) timed out, since on a loaded machine that may be the load.
"""

from __future__ import annotations

import ast
import copy
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
from pydantic import Field, field_validator

from datagen.stage_cache import any_timeout, uncached_if
from datagen.stages.base import (
    BuildContext,
    Row,
    RowResult,
    finished_rows,
    run_rows_isolated,
)
from datagen.stages.registry import register_stage
from datagen.stages.sandbox_worker import (
    SANDBOX_RESULT_MODULES,
    SandboxStage,
    SandboxStageSpec,
    SandboxWorker,
    check_sandbox,
)
from judges.code.mutation import OPERATORS, Mutant, mutants
from sandbox.extract import extract_code
from sandbox.verdict import Verdict

if TYPE_CHECKING:
    import ray.data

    from sandbox.execution import Limits, Sandbox

PYTHON_ALIASES = ("python", "py", "python3")
_TEST_DEF = re.compile(r"^\s*(?:async\s+)?def\s+test", re.MULTILINE)
_ASSERT_NAME = re.compile(r"^line (\d+):")
STEPS = ("generated", "parsed", "pass_reference", "kill_mutant")

STATS_TYPE = pa.struct(
    [
        *((step, pa.int64()) for step in STEPS),
        ("mutants", pa.int64()),
        ("mutants_killed", pa.int64()),
        ("mutation_score", pa.float64()),
        ("kept", pa.bool_()),
    ]
)


# ------------------------------------------------------------------ test suites (static)


@dataclass(frozen=True)
class TestId:
    """One test of a suite: an assert (by line), a `test_*` function, or a TestCase method."""

    __test__ = False  # not a pytest class

    kind: Literal["assert", "function", "method"]
    name: str  # the function or method name; "" for an assert
    cls: str = ""
    line: int = 0


def _is_test_case(node: ast.stmt) -> bool:
    names = [
        b.attr if isinstance(b, ast.Attribute) else getattr(b, "id", "") for b in getattr(node, "bases", [])
    ]
    return isinstance(node, ast.ClassDef) and any(n in ("TestCase", "IsolatedAsyncioTestCase") for n in names)


def find_tests(tree: ast.Module) -> list[TestId]:
    """The tests of a parsed suite, by the sandbox's Python format: module-level asserts,
    parameterless `test*` functions, and `test*` methods of TestCase classes."""
    found: list[TestId] = []
    for node in tree.body:
        if isinstance(node, ast.Assert):
            found.append(TestId("assert", "", line=node.lineno))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test"):
            if not node.args.args and not node.args.posonlyargs:
                found.append(TestId("function", node.name))
        elif _is_test_case(node):
            assert isinstance(node, ast.ClassDef)
            for member in node.body:
                if isinstance(member, ast.FunctionDef | ast.AsyncFunctionDef) and member.name.startswith(
                    "test"
                ):
                    found.append(TestId("method", member.name, cls=node.name))
    return found


def parse_test_name(name: str) -> TestId | None:
    """The test a verdict's test name stands for (`Cls.method`, `test_x`, `line N: ...`)."""
    if match := _ASSERT_NAME.match(name):
        return TestId("assert", "", line=int(match[1]))
    if "." in name:
        cls, method = name.split(".", 1)
        return TestId("method", method, cls=cls)
    return TestId("function", name) if name else None


def prune(tree: ast.Module, keep: set[TestId], suffix: str = "") -> ast.Module:
    """A copy of the suite with only the tests in `keep` (setup code, helpers and imports stay);
    with `suffix`, TestCase classes and test functions are renamed apart (`Cls` -> `Cls_s1`)."""
    body: list[ast.stmt] = []
    renames: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assert):
            if TestId("assert", "", line=node.lineno) in keep:
                body.append(node)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test"):
            if TestId("function", node.name) in keep:
                renames[node.name] = node.name + suffix
                body.append(node)
        elif _is_test_case(node):
            assert isinstance(node, ast.ClassDef)
            members = [
                m
                for m in node.body
                if not (isinstance(m, ast.FunctionDef | ast.AsyncFunctionDef) and m.name.startswith("test"))
                or TestId("method", m.name, cls=node.name) in keep
            ]
            if any(
                isinstance(m, ast.FunctionDef | ast.AsyncFunctionDef) and m.name.startswith("test")
                for m in members
            ):
                renames[node.name] = node.name + suffix
                pruned = copy.copy(node)
                pruned.body = members
                body.append(pruned)
        else:
            body.append(node)
    module = ast.Module(body=body, type_ignores=[])
    if suffix and renames:
        module = _Rename(renames).visit(module)
    return ast.fix_missing_locations(module)


class _Rename(ast.NodeTransformer):
    def __init__(self, renames: dict[str, str]) -> None:
        self.renames = renames

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:  # noqa: N802 - ast's naming
        node.name = self.renames.get(node.name, node.name)
        return self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:  # noqa: N802
        node.name = self.renames.get(node.name, node.name) if node.col_offset == 0 else node.name
        return self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> ast.AST:  # noqa: N802
        node.id = self.renames.get(node.id, node.id)
        return node


@dataclass
class Suite:
    """One candidate suite (a completion's code block) and what survived each step."""

    generated: int
    tree: ast.Module | None = None
    tests: list[TestId] = field(default_factory=list)
    passing: set[TestId] = field(default_factory=set)
    killing: set[TestId] = field(default_factory=set)
    pruned: str = ""


def parse_suite(text: str, extract: bool = True) -> Suite:
    """A completion (or bare test source) as a suite; a block that does not parse keeps its count
    of `def test...` lines as generated tests, none parsed."""
    code = extract_code(text, PYTHON_ALIASES) if extract else text
    if code is None:
        return Suite(generated=0)
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return Suite(generated=max(1, len(_TEST_DEF.findall(code))))
    tests = find_tests(tree)
    return Suite(generated=len(tests), tree=tree, tests=tests)


# ------------------------------------------------------------------ validation (sandbox)


@dataclass
class Validation:
    """What the validator kept of a problem's suites, and the counts per step."""

    suites: list[Suite]
    mutants: list[Mutant]
    killed: set[int]  # indices of mutants some kept test catches
    final: Verdict | None = None  # the reference on the kept tests, all suites in one module
    timed_out: bool = False  # some run (reference, mutant or final) timed out

    def count(self, step: str) -> int:
        """Tests surviving `step` (one of STEPS), over all suites."""
        if step == "generated":
            return sum(s.generated for s in self.suites)
        if step == "parsed":
            return sum(len(s.tests) for s in self.suites)
        if step == "pass_reference":
            return sum(len(s.passing) for s in self.suites)
        return sum(len(s.killing) for s in self.suites)

    @property
    def mutation_score(self) -> float:
        """Fraction of the mutants that the kept tests catch (0.0 without mutants)."""
        return len(self.killed) / len(self.mutants) if self.mutants else 0.0

    def kept_source(self) -> str:
        """The kept tests of every suite as one module (suites renamed apart)."""
        parts = []
        for index, suite in enumerate(self.suites):
            if suite.tree is not None and suite.killing:
                parts.append(ast.unparse(prune(suite.tree, suite.killing, suffix=f"_s{index}")))
        return "\n\n".join(parts) + "\n" if parts else ""


def _results(verdict: Verdict) -> dict[TestId, bool]:
    out: dict[TestId, bool] = {}
    for test in verdict.tests:
        test_id = parse_test_name(test.name)
        if test_id is not None:
            out[test_id] = test.passed
    return out


def validate_suites(
    sandbox: Sandbox,
    reference: str,
    suites: list[Suite],
    mutant_list: list[Mutant],
    *,
    limits: Limits | None = None,
    workers: int = 4,
) -> Validation:
    """Run each suite on the reference, then its passing tests on every mutant, in the sandbox.

    Args:
        sandbox: Where everything runs (nothing here runs on the host).
        reference: The reference solution (Python source).
        suites: Parsed candidate suites (`parse_suite`).
        mutant_list: Mutants of the reference (`judges.code.mutation.mutants`).
        limits: Limits for every run.
        workers: Runs in flight at once.
    """
    from sandbox.verify import Job, verify_many

    runnable = [s for s in suites if s.tree is not None and s.tests]
    on_reference = verify_many(
        sandbox, [Job("python", reference, ast.unparse(s.tree), extract=False) for s in runnable],  # type: ignore[arg-type]
        workers=workers, limits=limits,
    )  # fmt: skip
    check_sandbox(on_reference)
    for suite, verdict in zip(runnable, on_reference, strict=True):
        if verdict.status in ("passed", "failed"):
            results = _results(verdict)
            suite.passing = {t for t in suite.tests if results.get(t)}
        if suite.passing:
            suite.pruned = ast.unparse(prune(suite.tree, suite.passing))  # type: ignore[arg-type]
    candidates = [s for s in runnable if s.passing]
    jobs = [(s, m) for s in candidates for m in range(len(mutant_list))]
    on_mutants = verify_many(
        sandbox, [Job("python", mutant_list[m].source, s.pruned, extract=False) for s, m in jobs],
        workers=workers, limits=limits,
    )  # fmt: skip
    check_sandbox(on_mutants)
    killed: set[int] = set()
    for (suite, m), verdict in zip(jobs, on_mutants, strict=True):
        if verdict.status != "failed":  # a crash or timeout catches the mutant, but no test in particular
            continue
        results = _results(verdict)
        caught = {t for t in suite.passing if results.get(t) is False}
        suite.killing |= caught
        if caught:
            killed.add(m)
    validation = Validation(suites, mutant_list, killed)
    runs = [*on_reference, *on_mutants]
    if kept := validation.kept_source():
        (validation.final,) = verify_many(
            sandbox, [Job("python", reference, kept, extract=False)], limits=limits
        )
        check_sandbox([validation.final])
        runs.append(validation.final)
    validation.timed_out = any_timeout(v.status for v in runs)
    return validation


# ------------------------------------------------------------------ the stage


class _SynthesizeWorker(SandboxWorker):
    """A Ray actor holding one sandbox; validates a batch's rows one after the other (each row's
    runs use the sandbox's pool)."""

    stage: SynthesizeTestsStage

    def process_rows(self, rows: list[Row]) -> list[RowResult]:
        spec = self.stage.spec
        limits = spec.sandbox.limits.to_limits()

        def run(reference: str, suites: list[Suite], mutant_list: list[Mutant]) -> Validation:
            return validate_suites(
                self.sandbox, reference, suites, mutant_list, limits=limits, workers=spec.sandbox.pool_size
            )

        return run_rows_isolated(rows, lambda row: self.stage.row_result(row, run))


class SynthesizeTestsStageSpec(SandboxStageSpec):
    """Keep model-written unit tests that parse, pass the reference and catch a mutant."""

    type: Literal["synthesize_tests"] = "synthesize_tests"
    completions: str = Field(
        "completions", description="Column of completions, each a block of unittest tests."
    )
    solution: str = Field("solution", description="Column with the reference solution (Python).")
    language: str = Field(
        "language", description="Column naming each row's language (only Python is supported)."
    )
    output: str = Field(
        "synthetic_tests", description="Column for the kept tests (one module), null below min_tests."
    )
    min_tests: int = Field(4, ge=1, description="Kept tests a sample needs (report 3.3.4: at least 4).")
    max_mutants: int = Field(
        12, ge=1, description="Mutants per reference, taken round-robin over the operators."
    )
    operators: list[str] | None = Field(
        None, description="Mutation operators (default: all of judges/code/mutation.py)."
    )
    batch_size: int = Field(4, ge=1, description="Rows per batch sent to an actor.")

    @field_validator("operators")
    @classmethod
    def _known_operators(cls, value: list[str] | None) -> list[str] | None:
        unknown = sorted(set(value or ()) - set(OPERATORS))
        if unknown:
            raise ValueError(f"unknown mutation operator(s) {unknown}; known: {', '.join(OPERATORS)}")
        return value


@register_stage
class SynthesizeTestsStage(SandboxStage[SynthesizeTestsStageSpec]):
    """Validate each row's model-written tests against its reference and mutants in the sandbox."""

    spec_class = SynthesizeTestsStageSpec
    worker = _SynthesizeWorker
    read_fields = frozenset({"completions", "solution", "language"})
    result_modules = (*SANDBOX_RESULT_MODULES, "judges.code.mutation")

    def __init__(self, spec: SynthesizeTestsStageSpec, context: BuildContext | None = None) -> None:
        super().__init__(spec, context)
        self.reads = (spec.completions, spec.solution, spec.language)
        self.writes = {
            spec.output: pa.string(),
            "verdict": pa.string(),
            "pass_rate": pa.float64(),
            "test_synthesis": STATS_TYPE,
        }

    def result_settings(self) -> dict[str, Any]:
        """The spec's settings with the operators as `mutants` expands them (None: all)."""
        return super().result_settings() | {"operators": list(self.spec.operators or OPERATORS)}

    def row_result(self, row: Row, run: Any) -> Row:
        """Validate one row with `run(reference, suites, mutants) -> Validation`."""
        spec = self.spec
        if str(row[spec.language] or "").lower() not in PYTHON_ALIASES:
            raise ValueError(
                f"synthetic tests need Python (mutants are Python ASTs); got {row[spec.language]!r}"
            )
        reference = row[spec.solution]
        if not reference or not str(reference).strip():
            raise ValueError("no reference solution to validate the tests against")
        try:
            mutant_list = mutants(reference, spec.operators, limit=spec.max_mutants)
        except SyntaxError as err:
            raise ValueError(f"the reference solution does not parse: {err.msg} (line {err.lineno})") from err
        suites = [
            parse_suite(c["text"] if isinstance(c, dict) else str(c)) for c in row[spec.completions] or []
        ]
        validation: Validation = run(reference, suites, mutant_list)
        final = validation.final
        enough = validation.count("kill_mutant") >= spec.min_tests and final is not None
        return uncached_if(
            validation.timed_out,
            {
                spec.output: validation.kept_source() if enough else None,
                "verdict": final.status if enough else None,  # type: ignore[union-attr]
                "pass_rate": final.pass_rate if enough else None,  # type: ignore[union-attr]
                "test_synthesis": {step: validation.count(step) for step in STEPS}
                | {
                    "mutants": len(mutant_list),
                    "mutants_killed": len(validation.killed),
                    "mutation_score": validation.mutation_score,
                    "kept": enough,
                },
            },
        )

    def result_metrics(self, result: ray.data.Dataset) -> dict[str, Any]:
        """Survival per step, samples kept, tests per kept sample and the mean mutation score."""
        rows = finished_rows(result, ["test_synthesis"])
        stats = [r["test_synthesis"] for r in rows if r["test_synthesis"]]
        if not stats:
            return {}
        totals = {step: sum(s[step] for s in stats) for step in STEPS}
        kept = [s for s in stats if s["kept"]]
        survival = {
            f"{later}_of_{earlier}": round(totals[later] / totals[earlier], 4) if totals[earlier] else 0.0
            for earlier, later in zip(STEPS, STEPS[1:], strict=False)
        }
        return {
            "samples": len(stats),
            "samples_kept": len(kept),
            "tests": totals,
            "survival": survival,
            "tests_per_kept_sample": round(sum(s["kill_mutant"] for s in kept) / len(kept), 2)
            if kept
            else 0.0,
            "mutation_score_mean": round(sum(s["mutation_score"] for s in stats) / len(stats), 4),
            "mutants": sum(s["mutants"] for s in stats),
        }
