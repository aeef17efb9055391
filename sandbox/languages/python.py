"""Python 3: the tests run in a trusted judge process, the program in its own process
(`harness/python_harness.py`, a step with a `judge`).

Test format: Python source with any mix of free-standing `assert` statements (one test each; an
MBPP `test_list`, or HumanEval's `check` function followed by `check(entry_point)`), pytest-style
`def test_*()` functions, and `unittest.TestCase` classes (one test per `test*` method). The
tests travel on the judge's stdin, never on disk and never into the program's process. A program
that does not parse is a compile error.
"""

from __future__ import annotations

import functools
import marshal
import py_compile
import sys
import tempfile
from pathlib import Path

from sandbox.execution import ExecRequest, Limits, Step
from sandbox.harness.python_harness import JUDGE_BOOTSTRAP, compile_tests
from sandbox.languages.base import InvalidInput, Plan, Runner, harness_source, new_nonce

HARNESS = "harness.py"
PYTHON = ("python3", "-I", "-S", "-B")
# The program's process imports the harness as a module, so a compiled copy shipped beside it
# (checked by hash, ignored by another Python version) saves compiling it on every run.
PROGRAM = (
    *PYTHON, "-c", "import sys; sys.path.insert(0, '.'); import harness; sys.path.pop(0); harness.main()"
)  # fmt: skip
MAX_ARGUMENT = 128 << 10  # Linux's limit on one argv string (MAX_ARG_STRLEN): the judge's code


@functools.cache
def _harness() -> tuple[tuple[tuple[str, bytes], ...], list]:
    """The harness's files for the program's process (its source and compiled form), and the
    judge's copy: [cache tag, marshalled code] (see JUDGE_BOOTSTRAP)."""
    source = harness_source("python_harness.py")
    if len(source) >= MAX_ARGUMENT:  # the judge's fallback: its source as an argument
        raise RuntimeError(f"python_harness.py is {len(source)} bytes; the judge's argv takes < 128 KiB")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / HARNESS
        path.write_bytes(source)
        compiled = py_compile.compile(
            str(path), cfile=str(Path(folder) / "harness.pyc"), dfile=HARNESS, doraise=True,
            invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH,
        )  # fmt: skip
        pyc = Path(compiled).read_bytes()
    tag = sys.implementation.cache_tag
    judge = [tag, marshal.dumps(compile(source, "python_harness.py", "exec"))]
    return ((HARNESS, source), (f"__pycache__/harness.{tag}.pyc", pyc)), judge


class PythonRunner(Runner):
    """Python 3 (the image's 3.11)."""

    name = "python"
    aliases = ("python", "py", "python3")

    def __init__(self, strict: bool = True) -> None:
        self.strict = strict

    def plan_tests(self, code: str, tests: str, limits: Limits) -> Plan:
        try:
            found, test_code = compile_tests(tests)
        except SyntaxError as err:
            raise InvalidInput(f"the Python tests do not parse: {err.msg} (line {err.lineno})") from err
        except ValueError as err:  # NUL bytes in the source, on Python 3.11
            raise InvalidInput(f"the Python tests do not parse: {err}") from err
        if not found:
            raise InvalidInput(
                "no tests found: expected assert statements, test_* functions or TestCase classes"
            )
        nonce = new_nonce()
        files, judge_code = _harness()
        # The judge's code comes on its stdin and argv: the program can rewrite files in the work
        # directory, never what the judge reads from the server.
        # The tests come compiled too (the judge parses the source only on another Python).
        prepared = [sys.implementation.cache_tag, marshal.dumps(test_code), found]
        payload = {"harness": judge_code, "prepared": prepared, "nonce": nonce, "code": code, "tests": tests,
                   "strict": self.strict}  # fmt: skip
        run = Step(
            "run",
            (*PROGRAM, "program"),
            stdin=marshal.dumps(payload),  # plain values: the judge reads them without a JSON parser
            timeout_s=self.run_timeout_s,
            judge=(*PYTHON, "-c", JUDGE_BOOTSTRAP, "judge", files[0][1].decode()),
        )
        request = ExecRequest(files=files, steps=(run,), limits=limits)
        return Plan(request, tuple(t["name"] for t in found), nonce, trust="isolated")

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
