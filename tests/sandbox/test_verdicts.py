"""Verdicts without Docker: code extraction, bad input, and how the host judges what a sandbox
answered (crafted results: forged lines, missing completion records, kills, infrastructure errors)."""

import json
import marshal
from dataclasses import asdict

import pyarrow as pa
import pytest

from sandbox.execution import ExecRequest, ExecResult, StepResult
from sandbox.extract import extract_code
from sandbox.harness.python_harness import prepare
from sandbox.languages import get_runner, language_names
from sandbox.verdict import VERDICT_TYPE, TestResult, Verdict
from sandbox.verify import verify

PY = ("python", "py", "python3")


class CannedSandbox:
    """Answers every request with a result the test builds from the request (runs nothing)."""

    backend = "docker"

    def __init__(self, answer) -> None:  # noqa: ANN001
        self.answer = answer
        self.requests: list[ExecRequest] = []

    def execute(self, request: ExecRequest) -> ExecResult:
        self.requests.append(request)
        return self.answer(request)

    def close(self) -> None:
        pass


def nonce_of(request: ExecRequest) -> str:
    stdin = request.steps[-1].stdin
    # Python's judge reads a marshalled request (from the host: trusted plain values), the others JSON.
    return (marshal.loads(stdin) if request.steps[-1].judge else json.loads(stdin))["nonce"]


def run_result(stdout: bytes, exit_code: int | None = 0, **flags) -> ExecResult:  # noqa: ANN003
    step = StepResult("run", exit_code, None if exit_code is not None else 9, stdout, b"", **flags)
    return ExecResult((step,), "docker")


def record(nonce: str, **fields) -> bytes:  # noqa: ANN003
    return f"\n@@assay:{nonce} {json.dumps(fields)}\n".encode()


TESTS = "assert f() == 1\nassert f() == 2\n"


def test_extract_prefers_the_language_tag_then_untagged_and_takes_the_longest_block() -> None:
    text = "```bash\npip install x\n```\n```py\nshort()\n```\n```python\ndef longer():\n    return 1\n```\n"
    assert extract_code(text, PY) == "def longer():\n    return 1\n"
    assert extract_code(text, PY, select="first") == "short()\n"
    assert extract_code("```\nx = 1\n```", PY) == "x = 1\n"
    assert extract_code("~~~python\ncut = True", PY) == "cut = True\n"  # a fence left open by max_tokens
    assert extract_code("no code at all", PY) is None
    assert extract_code("```bash\nls\n```", PY) is None
    assert extract_code("```python\n\n```", PY) is None


def test_every_language_is_registered_with_its_aliases() -> None:
    assert language_names() == [
        "cobol",
        "cpp",
        "go",
        "java",
        "javascript",
        "python",
        "rust",
        "sql",
        "typescript",
    ]
    assert get_runner("C++").name == "cpp" and get_runner("ts").name == "typescript"
    assert get_runner("golang").name == "go" and get_runner("sqlite").name == "sql"


@pytest.mark.parametrize(
    ("language", "program", "tests", "expected"),
    [
        ("klingon", "x", TESTS, "unknown language 'klingon'"),
        ("python", "   \n", TESTS, "the program is empty"),
        ("python", "def f(): return 1", None, "tests field is missing"),
        ("python", b"def f():\n    return '\xff'\n", TESTS, "not UTF-8"),
        ("python", "def f(): return 1", "assert (", "the Python tests do not parse"),
        ("python", "def f(): return 1", "x = 1\n", "no tests found"),
        ("sql", "SELECT 1", "{not json", "SQL tests must be JSON"),
        ("sql", "SELECT 1", {"cases": [{"expected": 3}]}, "cases[0].expected must be a list"),
        ("cobol", "       PROGRAM-ID. X.", "assert 1", "COBOL takes stdio tests only"),
        ("cpp", "int f();", "int main() { return 0; }", "no assertions found"),
        ("python", "def f(): return 1", '{"stdio": []}', "non-empty list"),
    ],
)
def test_bad_input_gets_an_invalid_input_verdict_and_runs_nothing(language, program, tests, expected) -> None:  # noqa: ANN001
    sandbox = CannedSandbox(lambda request: pytest.fail("nothing should run"))
    verdict = verify(sandbox, language, program, tests, extract=False)
    assert verdict.status == "invalid_input"
    assert expected in verdict.message
    assert verdict.reward is None and not sandbox.requests


def test_no_code_block_is_rewarded_minus_one() -> None:
    sandbox = CannedSandbox(lambda request: pytest.fail("nothing should run"))
    verdict = verify(sandbox, "python", "Sure! The answer is 42.", TESTS)
    assert (verdict.status, verdict.reward) == ("no_code", -1.0)


def test_records_need_the_nonce_and_a_completion_record() -> None:
    def forged(request: ExecRequest) -> ExecResult:
        fake = b'\n@@assay:0000 {"t": "test", "i": 0, "ok": true}\nOK\n@@assay:0000 {"t": "done", "n": 2}\n'
        return run_result(fake + record(nonce_of(request), t="test", i=1, ok=True))

    verdict = verify(CannedSandbox(forged), "python", "def f(): return 1", TESTS, extract=False)
    assert verdict.status == "runtime_error"  # no done record with the right nonce
    assert [t.passed for t in verdict.tests] == [False, True]

    def complete(request: ExecRequest) -> ExecResult:
        nonce = nonce_of(request)
        return run_result(
            record(nonce, t="test", i=0, ok=True)
            + record(nonce, t="test", i=1, ok=True)
            + record(nonce, t="test", i=1, ok=False, msg="second run of a looped assert failed")
            + record(nonce, t="done", n=2)
        )

    verdict = verify(CannedSandbox(complete), "python", "def f(): return 1", TESTS, extract=False)
    assert verdict.status == "failed"  # a failure after a pass is final
    assert [t.passed for t in verdict.tests] == [True, False]

    def twice_done(request: ExecRequest) -> ExecResult:
        nonce = nonce_of(request)
        passes = record(nonce, t="test", i=0, ok=True) + record(nonce, t="test", i=1, ok=True)
        return run_result(passes + record(nonce, t="done", n=2) + record(nonce, t="done", n=2))

    assert (
        verify(CannedSandbox(twice_done), "python", "def f(): 1", TESTS, extract=False).status
        == "runtime_error"
    )


@pytest.mark.parametrize(
    ("flags", "exit_code", "status"),
    [
        ({"timed_out": True}, None, "timeout"),
        ({"memory_exceeded": True}, None, "memory"),
        ({}, None, "runtime_error"),
    ],
)
def test_kills_are_told_apart(flags, exit_code, status) -> None:  # noqa: ANN001
    def killed(request: ExecRequest) -> ExecResult:
        return run_result(record(nonce_of(request), t="test", i=0, ok=True), exit_code, **flags)

    verdict = verify(CannedSandbox(killed), "python", "def f(): return 1", TESTS, extract=False)
    assert verdict.status == status
    assert [t.passed for t in verdict.tests] == [True, False]  # what passed before the kill counts


def test_infrastructure_failures_are_sandbox_errors_without_reward() -> None:
    failing = CannedSandbox(lambda request: ExecResult((), "docker", error="container died"))
    verdict = verify(failing, "python", "def f(): return 1", TESTS, extract=False)
    assert (verdict.status, verdict.message, verdict.reward) == ("sandbox_error", "container died", None)

    def explode(request: ExecRequest) -> ExecResult:
        raise RuntimeError("engine gone")

    assert verify(CannedSandbox(explode), "python", "x", TESTS, extract=False).status == "sandbox_error"


def test_tests_never_travel_on_disk() -> None:
    sandbox = CannedSandbox(lambda request: run_result(b""))
    verify(sandbox, "python", "def f(): return 1", TESTS, extract=False)
    verify(
        sandbox, "javascript", "function f() { return 1; }", "assert.strictEqual(f(), 1);\n", extract=False
    )
    for request in sandbox.requests:
        assert all(b"f() == 1" not in data and b"f(), 1" not in data for _, data in request.files)


def test_python_discovery_names_every_test_kind() -> None:
    tests, _ = prepare(
        "import unittest\nclass T(unittest.TestCase):\n    def test_a(self):\n        pass\n"
        "def test_b():\n    pass\ndef check(candidate):\n    assert candidate(1) == 2\n"
        "    assert candidate(2)\n    assert True, 'constant: checks nothing'\ncheck(f)\n"
    )
    assert [t["name"] for t in tests] == [
        "T.test_a",
        "test_b",
        "line 8: candidate(1) == 2",
        "line 9: candidate(2)",
    ]


def test_verdict_rows_fit_the_arrow_type() -> None:
    tests = (TestResult("test_1", True), TestResult("test_2", False, "AssertionError: add(2, 2) == 5 — ✗"))
    verdicts = [Verdict("failed", tests, "m", "python", "docker", 0.1), Verdict("no_code")]
    column = pa.array([v.to_row() for v in verdicts], type=VERDICT_TYPE)
    # Every field, the per-test structs included, survives the round trip: a key the type lacks
    # would be dropped and a field the row lacks would come back null, and either breaks equality.
    assert column.to_pylist() == [v.to_row() for v in verdicts]
    failed = column[0].as_py()
    assert (failed["passed"], failed["total"]) == (1, 2)
    assert failed["tests"][1] == {"name": "test_2", "passed": False, "message": tests[1].message}
    assert column[1].as_py()["tests"] == []
    assert set(VERDICT_TYPE.field("tests").type.value_type.names) == set(asdict(tests[0]))


def test_a_program_that_clashes_with_its_tests_is_a_compile_error() -> None:
    sandbox = CannedSandbox(lambda request: pytest.fail("nothing should run"))
    tests = (
        "public class Main {\n  public static void main(String[] a) {\n    assert Main.f() == 1;\n  }\n}\n"
    )
    verdict = verify(
        sandbox, "java", "public class Main { static int f() { return 1; } }", tests, extract=False
    )
    assert (verdict.status, verdict.reward) == ("compile_error", 0.0)


@pytest.mark.parametrize(
    ("language", "program", "tests", "trust"),
    [
        ("python", "def f(): return 1", TESTS, "isolated"),
        ("python", "print(1)", '{"stdio": [{"stdin": "", "stdout": "1"}]}', "isolated"),
        ("sql", "SELECT 1", {"cases": [{"expected": [[1]]}]}, "isolated"),
        ("cpp", "int f() { return 1; }", "int main() {\n  assert(f() == 1);\n}\n", "in_process"),
        ("javascript", "function f() { return 1; }", "assert.strictEqual(f(), 1);\n", "in_process"),
    ],
)
def test_verdicts_say_where_the_expected_values_were_compared(language, program, tests, trust) -> None:  # noqa: ANN001
    sandbox = CannedSandbox(lambda request: run_result(b""))
    assert verify(sandbox, language, program, tests, extract=False).trust == trust
    assert verify(sandbox, language, "", tests, extract=False).trust == ""  # nothing ran


def test_python_tests_reach_only_the_judge() -> None:
    sandbox = CannedSandbox(lambda request: run_result(b""))
    verify(sandbox, "python", "def f(): return 1", TESTS, extract=False)
    (step,) = sandbox.requests[0].steps
    # The program's process gets its argv and the files; the tests and the nonce go to the
    # judge's stdin; the judge's code comes on its own argv, not from a file the program can edit.
    assert b"f() == 1" in step.stdin and nonce_of(sandbox.requests[0]).encode() in step.stdin
    assert step.judge[:5] == ("python3", "-I", "-S", "-B", "-c") and step.judge[6] == "judge"
    assert step.argv[-1] == "program" and all("f() == 1" not in part for part in step.argv + step.judge)
