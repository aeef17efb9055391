"""Python 3: the program and its tests run under `harness/python_harness.py`.

Test format: Python source with any mix of free-standing `assert` statements (one test each; an
MBPP `test_list`, or HumanEval's `check` function followed by `check(entry_point)`), pytest-style
`def test_*()` functions, and `unittest.TestCase` classes (one test per `test*` method). The
tests travel on stdin, never on disk. A program that does not parse is a compile error.
"""

from __future__ import annotations

import json

from sandbox.execution import ExecRequest, Limits, Step
from sandbox.harness.python_harness import prepare
from sandbox.languages.base import InvalidInput, Plan, Runner, harness_source, new_nonce

HARNESS = "harness.py"
PYTHON = ("python3", "-I", "-S", "-B")


class PythonRunner(Runner):
    """Python 3 (the image's 3.11)."""

    name = "python"
    aliases = ("python", "py", "python3")

    def __init__(self, strict: bool = True) -> None:
        self.strict = strict

    def plan_tests(self, code: str, tests: str, limits: Limits) -> Plan:
        try:
            found, _ = prepare(tests, self.strict)
        except SyntaxError as err:
            raise InvalidInput(f"the Python tests do not parse: {err.msg} (line {err.lineno})") from err
        if not found:
            raise InvalidInput(
                "no tests found: expected assert statements, test_* functions or TestCase classes"
            )
        nonce = new_nonce()
        payload = json.dumps({"nonce": nonce, "code": code, "tests": tests, "strict": self.strict})
        run = self.run_step((*PYTHON, HARNESS), payload.encode())
        request = ExecRequest(
            files=((HARNESS, harness_source("python_harness.py")),), steps=(run,), limits=limits
        )
        return Plan(request, tuple(t["name"] for t in found), nonce)

    def stdio_program(
        self, code: str
    ) -> tuple[tuple[tuple[str, bytes], ...], tuple[Step, ...], tuple[str, ...]]:
        return (
            (("main.py", code.encode()),),
            (self.compile_step((*PYTHON, "-m", "py_compile", "main.py")),),
            (
                *PYTHON,
                "main.py",
            ),
        )
