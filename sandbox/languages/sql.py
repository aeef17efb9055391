"""SQL on SQLite 3.40.

Test format (JSON): `{"setup": "CREATE TABLE ...; INSERT ...;", "cases": [{"name": ..., "setup":
"more SQL for this case", "expected": [[1, "a"], ...], "ordered": false}]}`. The program is one
query. Each case runs it on a fresh in-memory database holding the shared and the case's
setup, and compares its rows with `expected`: as a multiset unless `ordered` (or the query
has ORDER BY), values compared by type and value (1 and 1.0 agree; "1" and 1 do not; floats
within 1e-9). A query that SQLite cannot parse is a compile error.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from sandbox.execution import ExecRequest, ExecResult, Limits
from sandbox.languages.base import InvalidInput, Plan, Runner, harness_source, new_nonce, records
from sandbox.verdict import TestResult, Verdict, clip

HARNESS = "sql_harness.py"
_ORDER_BY = re.compile(r"\border\s+by\b", re.IGNORECASE)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return (
            a is b or (not isinstance(a, bool) and a == int(b)) or (not isinstance(b, bool) and b == int(a))
        )
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return type(a) is type(b) and a == b


def _rows_match(got: list[list[Any]], want: list[list[Any]], ordered: bool) -> bool:
    if len(got) != len(want):
        return False
    if ordered:
        return all(len(g) == len(w) and all(map(_same, g, w)) for g, w in zip(got, want, strict=True))
    rest = list(want)
    for row in got:
        match = next((k for k, w in enumerate(rest) if len(w) == len(row) and all(map(_same, row, w))), None)
        if match is None:
            return False
        rest.pop(match)
    return True


class SqlRunner(Runner):
    """SQLite through Python's sqlite3 module in the sandbox."""

    name = "sql"
    aliases = ("sql", "sqlite", "sqlite3")

    def plan(self, code: str, tests: str, limits: Limits) -> Plan:
        if not code.strip():
            raise InvalidInput("the program is empty")
        try:
            spec = json.loads(tests) if isinstance(tests, str) else tests
        except json.JSONDecodeError as err:
            raise InvalidInput(f"SQL tests must be JSON: {err}") from err
        if not isinstance(spec, dict) or not isinstance(spec.get("cases"), list) or not spec["cases"]:
            raise InvalidInput('SQL tests: expected {"setup": ..., "cases": [{"expected": [[...]]}, ...]}')
        for i, case in enumerate(spec["cases"]):
            if not isinstance(case, dict) or not isinstance(case.get("expected"), list):
                raise InvalidInput(f"SQL tests: cases[{i}].expected must be a list of rows")
            if not all(isinstance(row, list) for row in case["expected"]):
                raise InvalidInput(f"SQL tests: cases[{i}].expected: every row must be a list")
        nonce = new_nonce()
        payload = {
            "nonce": nonce,
            "query": code,
            "setup": spec.get("setup", ""),
            "cases": [{"setup": case.get("setup", "")} for case in spec["cases"]],
        }
        run = self.run_step(("python3", "-I", "-S", "-B", HARNESS), json.dumps(payload).encode())
        request = ExecRequest(
            files=((HARNESS, harness_source(HARNESS)),), steps=(run,), limits=self.limits(limits)
        )
        names = tuple(str(case.get("name") or f"case {i + 1}") for i, case in enumerate(spec["cases"]))
        ordered = _ORDER_BY.search(code) is not None
        cases = [
            {"expected": c["expected"], "ordered": bool(c.get("ordered", ordered))} for c in spec["cases"]
        ]
        # The expected rows stay here; the sandbox reports the query's rows.
        return Plan(request, names, nonce, trust="isolated", notes={"sql_cases": cases})

    def plan_tests(self, code: str, tests: str, limits: Limits) -> Plan:  # pragma: no cover - plan() decides
        return self.plan(code, tests, limits)

    def judge(self, plan: Plan, result: ExecResult) -> Verdict | None:
        """Compare the rows the harness reported with the expected ones (host side)."""
        run = next((s for s in result.steps if s.name == "run"), None)
        if result.error is not None or run is None or run.timed_out or run.memory_exceeded:
            return None  # the generic judge reports these
        base = {"language": self.name, "backend": result.backend, "wall_s": run.wall_s}
        found = records(run.stdout, plan.nonce)
        if any(r.get("t") == "compile_error" for r in found):
            message = next(str(r.get("msg")) for r in found if r.get("t") == "compile_error")
            return Verdict(
                "compile_error",
                tuple(TestResult(n, False, "not compiled") for n in plan.test_names),
                message,
                **base,
            )
        if not any(r.get("t") == "done" for r in found):
            return None
        outcome = {
            r["i"]: r for r in found if r.get("t") in ("rows", "error") and isinstance(r.get("i"), int)
        }
        tests = []
        for i, (name, case) in enumerate(zip(plan.test_names, plan.notes["sql_cases"], strict=True)):
            got = outcome.get(i)
            if got is None:
                tests.append(TestResult(name, False, "no result reported"))
            elif got["t"] == "error":
                tests.append(TestResult(name, False, clip(str(got.get("msg")), 500)))
            else:
                ok = _rows_match(got["rows"], case["expected"], case["ordered"])
                message = "" if ok else clip(f"expected {case['expected']!r}, got {got['rows']!r}", 500)
                tests.append(TestResult(name, ok, message))
        status = "passed" if all(t.passed for t in tests) else "failed"
        return Verdict(status, tuple(tests), **base)
