"""Synthetic unit tests: the static parts (finding, naming and pruning tests), the validator on
real MBPP problems in the Docker sandbox (gold tests survive; a wrong value, an always-true test
and a test that no mutant fails are dropped), and the stage on Ray with its lineage metrics."""

import ast
import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
import resources

from datagen.sources import prepare_rows
from datagen.stages.base import ERROR_COLUMN
from datagen.stages.synthesize_tests import (
    SynthesizeTestsStage,
    SynthesizeTestsStageSpec,
    TestId,
    find_tests,
    parse_suite,
    parse_test_name,
    prune,
    validate_suites,
)
from judges.code.mutation import mutants

BELL = """def bell_Number(n):
    bell = [[0 for i in range(n+1)] for j in range(n+1)]
    bell[0][0] = 1
    for i in range(1, n+1):
        bell[i][0] = bell[i-1][i-1]
        for j in range(1, i+1):
            bell[i][j] = bell[i-1][j-1] + bell[i][j-1]
    return bell[n][0]
"""
# A model's suite for MBPP task 608: two good tests and three that must go.
SUITE = """```python
import unittest

class TestBell(unittest.TestCase):
    def test_four(self):
        self.assertEqual(bell_Number(4), 15)

    def test_five(self):
        self.assertEqual(bell_Number(5), 52)

    def test_wrong_value(self):
        self.assertEqual(bell_Number(3), 6)

    def test_always_true(self):
        self.assertTrue(True)

    def test_never_kills(self):
        self.assertTrue(callable(bell_Number))
```"""
WEAK = (
    "```python\nimport unittest\nclass T(unittest.TestCase):\n"
    "    def test_true(self):\n        self.assertTrue(True)\n```"
)
BROKEN = "```python\nclass TestBell(unittest.TestCase):\n    def test_x(self)\n        pass\n```"


def test_find_name_and_prune_tests() -> None:
    source = (
        "import unittest\nX = 3\nassert f(1) == 1\n\ndef test_fn():\n    assert f(2) == 2\n\n"
        "class T(unittest.TestCase):\n    def setUp(self):\n        self.k = 1\n"
        "    def test_a(self):\n        self.assertEqual(f(X), 3)\n    def test_b(self):\n        pass\n"
    )
    tree = ast.parse(source)
    tests = find_tests(tree)
    assert tests == [
        TestId("assert", "", line=3),
        TestId("function", "test_fn"),
        TestId("method", "test_a", "T"),
        TestId("method", "test_b", "T"),
    ]
    assert parse_test_name("T.test_a") == tests[2] and parse_test_name("line 3: f(1) == 1") == tests[0]
    assert parse_test_name("test_fn") == tests[1]
    pruned = ast.unparse(prune(tree, {tests[2]}, suffix="_s0"))
    assert "class T_s0(" in pruned and "def setUp" in pruned and "test_b" not in pruned
    assert "X = 3" in pruned and "assert f(1)" not in pruned and "test_fn" not in pruned
    assert parse_suite(BROKEN).generated == 1 and parse_suite(BROKEN).tests == []
    assert parse_suite("no code here").generated == 0


@pytest.fixture(scope="module")
def sandbox() -> Iterator:
    box = resources.open_docker_sandbox(pool_size=2)  # skips loudly without Docker
    yield box
    box.close()


def mbpp(shared_data: Path, task_ids: set[int]) -> list[dict]:
    rows = [json.loads(line) for line in (shared_data / "mbpp" / "mbpp.jsonl").read_text().splitlines()]
    return [r for r in rows if r["task_id"] in task_ids]


@pytest.mark.docker
def test_mbpp_gold_tests_survive(sandbox, shared_data: Path) -> None:  # noqa: ANN001
    for row in mbpp(shared_data, {603, 608}):  # train split ids
        reference = row["code"].replace("\r\n", "\n")
        suite = parse_suite("\n".join(row["test_list"]) + "\n", extract=False)
        validation = validate_suites(sandbox, reference, [suite], mutants(reference, limit=8), workers=2)
        assert [validation.count(step) for step in ("generated", "parsed", "pass_reference")] == [3, 3, 3]
        assert validation.count("kill_mutant") == 3, row["task_id"]
        assert validation.final is not None and validation.final.status == "passed"
        assert validation.mutation_score > 0.5


@pytest.mark.docker
def test_wrong_always_true_and_never_killing_tests_are_dropped(sandbox) -> None:  # noqa: ANN001
    suites = [parse_suite(SUITE), parse_suite(BROKEN), parse_suite("I would test it by hand.")]
    validation = validate_suites(sandbox, BELL, suites, mutants(BELL, limit=10), workers=2)
    good, broken, _ = validation.suites
    names = {t.name for t in good.tests}
    assert names == {"test_four", "test_five", "test_wrong_value", "test_always_true", "test_never_kills"}
    assert {t.name for t in good.passing} == names - {"test_wrong_value"}
    assert {t.name for t in good.killing} == {"test_four", "test_five"}
    assert [validation.count(s) for s in ("generated", "parsed", "pass_reference", "kill_mutant")] == [
        6,
        5,
        4,
        2,
    ]
    kept = validation.kept_source()
    assert "test_four" in kept and "test_always_true" not in kept and "class TestBell_s0(" in kept
    assert (
        validation.final is not None and validation.final.status == "passed" and validation.final.total == 2
    )


@pytest.mark.docker
def test_stage_keeps_samples_with_enough_tests_and_reports_metrics(ray_local) -> None:
    import ray.data

    rows = pa.table(
        {
            "id": ["bell", "too-few", "no-reference"],
            "language": ["python"] * 3,
            "solution": [BELL, BELL, None],
            "completions": [[{"text": SUITE}, {"text": BROKEN}], [{"text": WEAK}], [{"text": SUITE}]],
            "verdict": ["passed"] * 3,  # the source's own verdict on its gold tests
            "tests": ["assert bell_Number(2) == 2\n"] * 3,
        }
    )
    spec = SynthesizeTestsStageSpec(
        type="synthesize_tests",
        name="tests",
        output="tests",
        min_tests=2,
        max_mutants=6,
        sandbox={"backend": "docker"},
    )
    stage = SynthesizeTestsStage(spec)
    out = {r["id"]: r for r in stage.apply(ray.data.from_arrow(prepare_rows(rows))).take_all()}
    bell = out["bell"]
    assert bell[ERROR_COLUMN] is None and bell["verdict"] == "passed" and bell["pass_rate"] == 1.0
    assert "test_five" in bell["tests"] and "test_never_kills" not in bell["tests"]
    stats = bell["test_synthesis"]
    counts = (stats["generated"], stats["parsed"], stats["pass_reference"], stats["kill_mutant"])
    assert counts == (6, 5, 4, 2)
    assert stats["kept"] and 0 < stats["mutation_score"] <= 1 and stats["mutants"] == 6
    too_few = out["too-few"]
    assert too_few["tests"] is None and too_few["verdict"] is None  # the gold tests do not stay
    assert too_few["test_synthesis"]["kept"] is False and too_few["test_synthesis"]["pass_reference"] == 1
    assert "no reference solution" in out["no-reference"][ERROR_COLUMN]
    metrics = stage.metrics(ray.data.from_items([bell]))
    assert metrics["samples_kept"] == 1 and metrics["tests"]["kill_mutant"] == 2
    assert metrics["survival"] == {"parsed_of_generated": 0.8333, "pass_reference_of_parsed": 0.8,
                                   "kill_mutant_of_pass_reference": 0.5}  # fmt: skip


def test_spec_refuses_unknown_operators() -> None:
    with pytest.raises(ValueError, match="unknown mutation operator"):
        SynthesizeTestsStageSpec(type="synthesize_tests", operators=["comparison_negate", "flip_everything"])


@pytest.mark.slow  # 20 MBPP problems, ~13 sandbox runs each; prints the figures for docs/code_data.md
@pytest.mark.docker
def test_mbpp_gold_tests_survive_at_scale(sandbox, shared_data: Path) -> None:  # noqa: ANN001
    import time

    rows = mbpp(shared_data, set(range(601, 621)))
    started = time.perf_counter()
    steps = {"generated": 0, "parsed": 0, "pass_reference": 0, "kill_mutant": 0}
    scores, no_kill = [], []
    for row in rows:
        reference = row["code"].replace("\r\n", "\n")
        setup = [row["test_setup_code"]] if row["test_setup_code"] else []
        suite = parse_suite("\n".join(setup + row["test_list"]) + "\n", extract=False)
        validation = validate_suites(sandbox, reference, [suite], mutants(reference, limit=12), workers=2)
        for step in steps:
            steps[step] += validation.count(step)
        scores.append(validation.mutation_score)
        if validation.count("kill_mutant") < validation.count("pass_reference"):
            no_kill.append(row["task_id"])
    wall = time.perf_counter() - started
    print(f"\n{len(rows)} MBPP train problems: {steps}; mean mutation score {sum(scores) / len(scores):.3f}; "
          f"tasks with a gold test that kills no mutant: {no_kill}; {wall:.1f} s")  # fmt: skip
    assert steps["pass_reference"] == steps["parsed"] == steps["generated"]  # every gold test passes
