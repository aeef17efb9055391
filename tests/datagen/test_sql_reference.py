"""SQL judged by result sets: the reference query's rows (run in the Docker sandbox) become the
expected rows; a completion passes when its result set equals them, in any order unless it
orders its rows; equivalent correct queries dedupe by their canonical text."""

import json
from collections.abc import Iterator

import pytest
import resources

from datagen.stages.code_select import program_key
from datagen.stages.sql_reference import SqlReferenceStage, SqlReferenceStageSpec
from sandbox.verify import verify

DATABASE = {
    "setup": "CREATE TABLE emp (name TEXT, dept TEXT, salary INT);"
    "INSERT INTO emp VALUES ('ann', 'eng', 120), ('bob', 'eng', 100), ('cid', 'ops', 90);",
    "cases": [
        {"name": "base"},
        {"name": "one more", "setup": "INSERT INTO emp VALUES ('dee', 'ops', 130);"},
    ],
}
REFERENCE = "SELECT dept, MAX(salary) FROM emp GROUP BY dept"


@pytest.fixture(scope="module")
def sandbox() -> Iterator:
    box = resources.open_docker_sandbox(pool_size=2)  # skips loudly without Docker
    yield box
    box.close()


@pytest.mark.docker
def test_reference_rows_judge_completions_by_result_set(sandbox) -> None:  # noqa: ANN001
    stage = SqlReferenceStage(SqlReferenceStageSpec(type="sql_reference"))
    out = stage.process({"solution": REFERENCE, "tests": json.dumps(DATABASE)}, sandbox)
    tests = json.loads(out["tests"])
    assert [sorted(c["expected"]) for c in tests["cases"]] == [
        [["eng", 120], ["ops", 90]],
        [["eng", 120], ["ops", 130]],
    ]
    assert out["canonical_reference"] == "SELECT dept, MAX(salary) FROM emp GROUP BY dept"

    def status(query: str) -> str:
        return verify(sandbox, "sql", f"```sql\n{query}\n```", out["tests"]).status

    assert status("select e.dept, max(e.salary) as top from emp e group by e.dept") == "passed"
    assert status("SELECT dept, MAX(salary) FROM emp GROUP BY dept ORDER BY dept DESC") == "passed"
    assert status("SELECT dept, MIN(salary) FROM emp GROUP BY dept") == "failed"
    assert status("SELECT dept FROM emp GROUP BY dept") == "failed"
    assert status("SELEC dept FRM emp") == "compile_error"
    # Same query, other spelling: one SFT row after dedupe.
    assert program_key("sql", "```sql\nselect e.dept, max(e.salary) from emp e group by e.dept;\n```") == (
        program_key("sql", f"```sql\n{REFERENCE}\n```")
    )


@pytest.mark.docker
def test_order_counts_only_when_the_query_orders(sandbox) -> None:  # noqa: ANN001
    stage = SqlReferenceStage(SqlReferenceStageSpec(type="sql_reference"))
    tests = {"setup": DATABASE["setup"], "cases": [{"name": "by salary", "ordered": True}]}
    ordered = stage.process(
        {"solution": "SELECT name FROM emp ORDER BY salary", "tests": json.dumps(tests)}, sandbox
    )
    assert json.loads(ordered["tests"])["cases"][0]["expected"] == [["cid"], ["bob"], ["ann"]]
    check = ordered["tests"]
    assert (
        verify(sandbox, "sql", "SELECT name FROM emp ORDER BY salary ASC", check, extract=False).passed == 1
    )
    assert (
        verify(sandbox, "sql", "SELECT name FROM emp ORDER BY name", check, extract=False).status == "failed"
    )
    unordered = stage.process(
        {"solution": "SELECT name FROM emp", "tests": json.dumps({"setup": DATABASE["setup"]})}, sandbox
    )
    assert verify(sandbox, "sql", "SELECT name FROM emp WHERE 1 ORDER BY name DESC", unordered["tests"],
                  extract=False).status == "passed"  # fmt: skip


@pytest.mark.docker
def test_a_failing_reference_fails_its_row(sandbox) -> None:  # noqa: ANN001
    stage = SqlReferenceStage(SqlReferenceStageSpec(type="sql_reference"))
    with pytest.raises(ValueError, match="no such column"):
        stage.process({"solution": "SELECT nope FROM emp", "tests": json.dumps(DATABASE)}, sandbox)
    with pytest.raises(ValueError, match="no reference query"):
        stage.process({"solution": " ", "tests": json.dumps(DATABASE)}, sandbox)
