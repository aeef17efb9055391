"""SQL problems judged by result sets: the expected rows come from the reference query.

A text-to-SQL task gives a database (schema and rows as SQL) and a reference query; a
completion is correct when its result set on that database equals the reference's. This stage
runs each row's reference query in the sandbox on every case's database and writes the tests in
the sandbox's SQL format (docs/sandbox.md) with those rows as `expected`, so the `execute` stage
then judges completions by result set: as a multiset, unless the reference query orders its
rows (a top-level ORDER BY), when the order counts too. Each case gets that `ordered` flag
explicitly (a case may set its own), so a completion that adds an ORDER BY of its own to an
unordered task is not held to an order the task never asked for. The reference's canonical text
(judges/code/sql.py) is written too, for dedupe.

Input `tests`: `{"setup": "CREATE TABLE ...; INSERT ...;", "cases": [{"name": ..., "setup": ...}]}`
(or no `cases`: one case on the shared setup). A reference that fails on a case fails its row,
and so does one that times out: a failed row is never kept in the stage-result cache
(datagen/stage_cache.py), so a re-run runs it again.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
from pydantic import Field

from datagen.stages.base import BuildContext, Row, RowResult
from datagen.stages.registry import register_stage
from datagen.stages.sandbox_worker import (
    SANDBOX_RESULT_MODULES,
    SandboxStage,
    SandboxStageSpec,
    SandboxWorker,
)
from judges.code.sql import canonical_sql, orders_rows

if TYPE_CHECKING:
    from sandbox.execution import Sandbox

# Runs in the sandbox: the reference query on a fresh in-memory database per case; rows as JSON.
RUNNER = """import json, sqlite3, sys
task = json.load(sys.stdin)
out = []
for case in task["cases"]:
    db = sqlite3.connect(":memory:")
    try:
        db.executescript(task["setup"] + "\\n" + (case.get("setup") or ""))
        rows = [list(r) for r in db.execute(task["query"]).fetchall()]
        out.append({"rows": rows})
    except sqlite3.Error as err:
        out.append({"error": f"{type(err).__name__}: {err}"})
print(json.dumps(out))
"""


def _json_value(value: Any) -> Any:
    if isinstance(value, bytes):
        raise ValueError("the reference returns a BLOB, which the SQL tests cannot hold")
    return value


def reference_rows(sandbox: Sandbox, query: str, tests: dict, limits: Any) -> list[list[list[Any]]]:
    """The reference query's rows on every case's database, run in the sandbox.

    Raises:
        ValueError: the query failed on a case, or the sandbox could not run it.
    """
    from sandbox import ExecRequest, Step

    cases = tests.get("cases") or [{"name": "reference"}]
    payload = {"query": query, "setup": tests.get("setup", ""), "cases": cases}
    request = ExecRequest(
        files=(("run.py", RUNNER.encode()),),
        steps=(Step("run", ("python3", "-I", "-S", "run.py"), stdin=json.dumps(payload).encode()),),
        limits=limits,
    )
    result = sandbox.execute(request)
    if result.error is not None:
        raise RuntimeError(f"sandbox error: {result.error}")
    (step,) = result.steps
    if step.exit_code != 0 or step.timed_out:
        raise ValueError(f"the reference query did not run: {step.stderr.decode(errors='replace')[-500:]}")
    outcomes = json.loads(step.stdout)
    rows = []
    for case, outcome in zip(cases, outcomes, strict=True):
        if "error" in outcome:
            raise ValueError(f"the reference query fails on case {case.get('name')!r}: {outcome['error']}")
        rows.append([[_json_value(v) for v in row] for row in outcome["rows"]])
    return rows


class _SqlReferenceWorker(SandboxWorker):
    """A Ray actor holding one sandbox; runs its batch's rows on its threads."""

    stage: SqlReferenceStage

    def process_rows(self, rows: list[Row]) -> list[RowResult]:
        return self.map_rows(lambda row: self.stage.process(row, self.sandbox), rows)


class SqlReferenceStageSpec(SandboxStageSpec):
    """Fill SQL tests' expected rows by running the reference query in the sandbox."""

    type: Literal["sql_reference"] = "sql_reference"
    reference: str = Field("solution", description="Column with the reference query.")
    tests: str = Field("tests", description="Column with the database and cases (JSON); rewritten in place.")


@register_stage
class SqlReferenceStage(SandboxStage[SqlReferenceStageSpec]):
    """Rewrite each row's SQL tests with the reference's result set as the expected rows."""

    spec_class = SqlReferenceStageSpec
    worker = _SqlReferenceWorker
    read_fields = frozenset({"reference", "tests"})  # `tests` is a written column too: in the key as such
    result_modules = (*SANDBOX_RESULT_MODULES, "judges.code.sql")

    def __init__(self, spec: SqlReferenceStageSpec, context: BuildContext | None = None) -> None:
        super().__init__(spec, context)
        self.reads = (spec.reference, spec.tests)
        self.writes = {spec.tests: pa.string(), "canonical_reference": pa.string()}

    def process(self, row: Row, sandbox: Sandbox) -> Row:
        """The row's tests with expected rows, and the reference's canonical text."""
        query = row[self.spec.reference]
        if not query or not str(query).strip():
            raise ValueError("no reference query")
        try:
            tests = json.loads(row[self.spec.tests]) if isinstance(row[self.spec.tests], str) else None
        except json.JSONDecodeError as err:
            raise ValueError(f"SQL tests must be JSON: {err}") from err
        if not isinstance(tests, dict):
            raise ValueError('SQL tests: expected {"setup": ..., "cases": [...]}')
        cases = tests.get("cases") or [{"name": "reference"}]
        rows = reference_rows(sandbox, query, tests, self.spec.sandbox.limits.to_limits())
        ordered = orders_rows(query)
        filled = {
            **tests,
            "cases": [
                {"ordered": ordered, **case, "expected": r} for case, r in zip(cases, rows, strict=True)
            ],
        }
        return {self.spec.tests: json.dumps(filled), "canonical_reference": canonical_sql(query)}
