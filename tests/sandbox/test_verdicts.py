"""Verdicts without Docker: code extraction, bad input, and how the host judges what a sandbox
answered (crafted results: forged lines, missing completion records, kills, infrastructure errors)."""

import json

import pyarrow as pa
import pytest

from sandbox.execution import ExecRequest, ExecResult, StepResult
from sandbox.extract import extract_code
from sandbox.harness.python_harness import prepare
from sandbox.languages import get_runner, language_names
from sandbox.verdict import VERDICT_TYPE, Verdict
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
    return json.loads(request.steps[-1].stdin)["nonce"]


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
    verdict = Verdict("failed", (), "m", "python", "docker", 0.1)
    table = pa.table({"verdict": pa.array([verdict.to_row()], type=VERDICT_TYPE)})
    assert table["verdict"][0].as_py()["status"] == "failed"


def test_a_program_that_clashes_with_its_tests_is_a_compile_error() -> None:
    sandbox = CannedSandbox(lambda request: pytest.fail("nothing should run"))
    tests = (
        "public class Main {\n  public static void main(String[] a) {\n    assert Main.f() == 1;\n  }\n}\n"
    )
    verdict = verify(
        sandbox, "java", "public class Main { static int f() { return 1; } }", tests, extract=False
    )
    assert (verdict.status, verdict.reward) == ("compile_error", 0.0)
