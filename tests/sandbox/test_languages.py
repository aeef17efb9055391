"""Every language through the real Docker sandbox: a known-good program passes every test, a
known-bad one fails exactly the tests it should, a compile error is a compile error (not a test
failure), and a program that never ends is a timeout."""

import random
from dataclasses import dataclass

import pytest

from sandbox.execution import Limits
from sandbox.verify import verify

pytestmark = pytest.mark.docker

SHORT = Limits(wall_timeout_s=3.0)


@dataclass(frozen=True)
class Case:
    good: str
    bad: str  # subtracts instead of adding: fails add(1, 2) == 3 and add(2, 2) == 4 only
    broken: str  # does not compile
    endless: str  # never returns
    tests: str


STDIO = '{"stdio": [{"name": "small", "stdin": "1 2", "stdout": "3"}, {"name": "zero", "stdin": "0 0", "stdout": "0"}, {"name": "same", "stdin": "2 2", "stdout": "4"}]}'  # noqa: E501
EXPECTED_BAD = [False, True, False]

CASES = {
    "python": Case(
        "def add(a, b):\n    return a + b\n",
        "def add(a, b):\n    return a - b\n",
        "def add(a, b)\n    return a + b\n",
        "def add(a, b):\n    while True:\n        pass\n",
        "assert add(1, 2) == 3\nassert add(0, 0) == 0\nassert add(2, 2) == 4\n",
    ),
    "cpp": Case(
        "int add(int a, int b) { return a + b; }\n",
        "int add(int a, int b) { return a - b; }\n",
        "int add(int a, int b) { return a + ; }\n",
        "int add(int a, int b) { volatile int x = 0; while (true) { x++; } }\n",
        "#include <cassert>\nint main() {\n  assert(add(1, 2) == 3);\n  assert(add(0, 0) == 0);\n"
        "  assert(add(2, 2) == 4);\n  return 0;\n}\n",
    ),
    "java": Case(
        "class Solution { static int add(int a, int b) { return a + b; } }\n",
        "class Solution { static int add(int a, int b) { return a - b; } }\n",
        "class Solution { static int add(int a, int b) { return a + ; } }\n",
        "class Solution { static int add(int a, int b) { while (true) { } } }\n",
        "public class Main {\n  public static void main(String[] args) {\n"
        "    assert Solution.add(1, 2) == 3;\n"
        '    assert Solution.add(0, 0) == 0 : "zero";\n    assert (Solution.add(2, 2) == 4);\n  }\n}\n',
    ),
    "go": Case(
        "package main\n\nfunc Add(a, b int) int { return a + b }\n",
        "func Add(a, b int) int { return a - b }\n",
        "func Add(a, b int) int { return a + }\n",
        "func Add(a, b int) int { for {\n} }\n",
        "package main\n\nfunc main() {\n\tassert(Add(1, 2) == 3)\n\tassert(Add(0, 0) == 0)\n"
        "\tassert(Add(2, 2) == 4)\n}\n",
    ),
    "rust": Case(
        "fn add(a: i32, b: i32) -> i32 { a + b }\n",
        "fn add(a: i32, b: i32) -> i32 { a - b }\n",
        "fn add(a: i32, b: i32) -> i32 { a + }\n",
        "fn add(a: i32, b: i32) -> i32 { loop {} }\n",
        "fn main() {\n    assert_eq!(add(1, 2), 3);\n    assert_eq!(add(0, 0), 0);\n"
        "    assert!(add(2, 2) == 4);\n}\n",
    ),
    "javascript": Case(
        "function add(a, b) { return a + b; }\nmodule.exports = { add };\n",
        "function add(a, b) { return a - b; }\n",
        "function add(a, b) { return a + ; }\n",
        "function add(a, b) { while (true) {} }\n",
        "const assert = require('node:assert');\nassert.deepEqual(add(1, 2), 3);\n"
        "assert.strictEqual(add(0, 0), 0);\n"
        "assert(add(2, 2) === 4);\n",
    ),
    "typescript": Case(
        "export function add(a: number, b: number): number { return a + b; }\n",
        "function add(a: number, b: number): number { return a - b; }\n",
        "function add(a: number, b: number): number { return 'not a number'; }\n",
        "function add(a: number, b: number): number { while (true) {} }\n",
        "const assert = require('node:assert');\nassert.deepEqual(add(1, 2), 3);\n"
        "assert.strictEqual(add(0, 0), 0);\n"
        "assert(add(2, 2) === 4);\n",
    ),
}
ACCEPT = "       ACCEPT LINE-IN.\n"
COBOL_HEAD = (
    "       IDENTIFICATION DIVISION.\n       PROGRAM-ID. ADDER.\n       DATA DIVISION.\n"
    "       WORKING-STORAGE SECTION.\n       01 LINE-IN PIC X(20).\n       01 A PIC 9(4).\n"
    "       01 B PIC 9(4).\n       01 C PIC Z(4)9.\n       PROCEDURE DIVISION.\n"
    "           ACCEPT LINE-IN.\n           UNSTRING LINE-IN DELIMITED BY SPACE INTO A B.\n"
)
CASES["cobol"] = Case(
    COBOL_HEAD
    + "           COMPUTE C = A + B.\n           DISPLAY FUNCTION TRIM(C).\n           STOP RUN.\n",
    COBOL_HEAD
    + "           COMPUTE C = A - B.\n           DISPLAY FUNCTION TRIM(C).\n           STOP RUN.\n",
    COBOL_HEAD + "           COMPUT C = A + B.\n           STOP RUN.\n",
    COBOL_HEAD + "       LOOP-FOREVER.\n           GO TO LOOP-FOREVER.\n",
    STDIO,
)
SQL_TESTS = (
    '{"setup": "CREATE TABLE t(a INT, b INT);", "cases": ['
    '{"name": "small", "setup": "INSERT INTO t VALUES (1, 2);", "expected": [[3]]},'
    '{"name": "zero", "setup": "INSERT INTO t VALUES (0, 0);", "expected": [[0]]},'
    '{"name": "same", "setup": "INSERT INTO t VALUES (2, 2);", "expected": [[4]]}]}'
)
CASES["sql"] = Case(
    "SELECT a + b FROM t",
    "SELECT a - b FROM t;",
    "SELEC a + b FROM t",
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
    SQL_TESTS,
)
LANGUAGES = sorted(CASES)


@pytest.mark.parametrize("language", LANGUAGES)
def test_known_good_program_passes_every_test(docker_sandbox, language: str) -> None:
    verdict = verify(docker_sandbox, language, CASES[language].good, CASES[language].tests, extract=False)
    assert verdict.status == "passed", verdict
    assert verdict.total == 3 and verdict.pass_rate == 1.0 and verdict.reward == 1.0
    assert verdict.backend == "docker"


@pytest.mark.parametrize("language", LANGUAGES)
def test_known_bad_program_fails_the_right_tests(docker_sandbox, language: str) -> None:
    verdict = verify(docker_sandbox, language, CASES[language].bad, CASES[language].tests, extract=False)
    assert verdict.status == "failed", verdict
    assert [t.passed for t in verdict.tests] == EXPECTED_BAD, verdict.tests
    assert verdict.reward == pytest.approx(1 / 3)
    assert all(t.message for t in verdict.tests if not t.passed)


@pytest.mark.parametrize("language", LANGUAGES)
def test_compile_error_is_not_a_test_failure(docker_sandbox, language: str) -> None:
    verdict = verify(docker_sandbox, language, CASES[language].broken, CASES[language].tests, extract=False)
    assert verdict.status == "compile_error", verdict
    assert verdict.message and verdict.reward == 0.0
    assert all(not t.passed and t.message == "not compiled" for t in verdict.tests)


@pytest.mark.parametrize("language", LANGUAGES)
def test_endless_program_is_a_timeout(docker_sandbox, language: str) -> None:
    verdict = verify(
        docker_sandbox, language, CASES[language].endless, CASES[language].tests, extract=False, limits=SHORT
    )
    assert verdict.status == "timeout", verdict
    assert verdict.passed == 0


@pytest.mark.parametrize("language", ["python", "javascript"])
def test_a_program_ended_by_its_cpu_limit_is_a_timeout(docker_sandbox, language: str) -> None:
    """A busy program may reach its CPU limit (SIGXCPU) before the wall clock; that is a timeout too.
    Python runs under a judge whose own exit (0) is the step's status, so this is the case where
    the server must look at the program's status (it once gave runtime_error, a CI flake)."""
    limits = Limits(wall_timeout_s=30.0, cpu_time_s=1.0)
    verdict = verify(
        docker_sandbox, language, CASES[language].endless, CASES[language].tests, extract=False, limits=limits
    )
    assert verdict.status == "timeout", verdict
    assert verdict.wall_s < 15, verdict.wall_s  # the CPU limit ended it, not the 30 s deadline
    assert verdict.passed == 0


@pytest.mark.parametrize("language", ["python", "cpp", "java", "go", "rust", "javascript", "typescript"])
def test_stdio_cases_work_for_every_compiled_and_interpreted_language(docker_sandbox, language: str) -> None:
    programs = {
        "python": "a, b = map(int, input().split())\nprint(a + b)\n",
        "cpp": "#include <iostream>\nint main() { long a, b; std::cin >> a >> b;"
        " std::cout << a + b << '\\n'; }\n",
        "java": "import java.util.Scanner;\npublic class Main { public static void main(String[] x) {"
        " Scanner s = new Scanner(System.in); System.out.println(s.nextInt() + s.nextInt()); } }\n",
        "go": 'package main\nimport "fmt"\nfunc main() { var a, b int; fmt.Scan(&a, &b);'
        " fmt.Println(a + b) }\n",
        "rust": "use std::io::Read;\nfn main() { let mut s = String::new();"
        " std::io::stdin().read_to_string(&mut s)"
        ".unwrap(); let v: Vec<i64> = s.split_whitespace().map(|x| x.parse().unwrap()).collect();"
        ' println!("{}", v[0] + v[1]); }\n',
        "javascript": "const [a, b] = require('fs').readFileSync(0, 'utf8').trim()"
        ".split(/\\s+/).map(Number);\n"
        "console.log(a + b);\n",
        "typescript": "const [a, b] = require('fs').readFileSync(0, 'utf8').trim()"
        ".split(/\\s+/).map(Number);\nconsole.log(a + b);\n",
    }
    verdict = verify(docker_sandbox, language, programs[language], STDIO, extract=False)
    assert verdict.status == "passed", verdict
    multiply = {"java": ("+ s.nextInt()", "* s.nextInt()"), "rust": ("v[0] + v[1]", "v[0] * v[1]")}
    wrong_program = programs[language].replace(*multiply.get(language, ("a + b", "a * b")))
    wrong = verify(docker_sandbox, language, wrong_program, STDIO, extract=False)
    assert [t.passed for t in wrong.tests] == [False, True, True], wrong


def test_python_unittest_pytest_style_and_asserts_mix(docker_sandbox) -> None:
    tests = (
        "import unittest\n\n"
        "class TestAdd(unittest.TestCase):\n"
        "    def setUp(self):\n        self.base = 1\n"
        "    def test_ok(self):\n        self.assertEqual(add(self.base, 2), 3)\n"
        "    def test_wrong(self):\n        self.assertEqual(add(2, 2), 5)\n"
        "    def test_raises(self):\n        with self.assertRaises(TypeError):\n            add(1, None)\n\n"
        "def test_function():\n    assert add(3, 3) == 6\n\n"
        "assert add(0, 1) == 1\n"
    )
    verdict = verify(docker_sandbox, "python", "def add(a, b):\n    return a + b\n", tests, extract=False)
    results = {t.name: t.passed for t in verdict.tests}
    assert results == {
        "TestAdd.test_ok": True,
        "TestAdd.test_wrong": False,
        "TestAdd.test_raises": True,
        "test_function": True,
        "line 17: add(0, 1) == 1": True,
    }, verdict
    assert verdict.status == "failed"
    assert "5" in next(t.message for t in verdict.tests if t.name == "TestAdd.test_wrong")


def test_completion_code_block_is_extracted(docker_sandbox) -> None:
    completion = (
        "Here is the function:\n\n```python\ndef add(a, b):\n    return a + b\n```\n\n"
        "Usage:\n```python\nprint(add(1, 2))\n```\n"
    )
    verdict = verify(docker_sandbox, "python", completion, "assert add(1, 2) == 3\n")
    assert verdict.status == "passed"
    assert verify(docker_sandbox, "python", "I cannot write code.", "assert add(1, 2) == 3\n").reward == -1.0


STDLIB_VALUES = {
    "fraction": (
        "from fractions import Fraction\ndef f():\n    return Fraction(1, 2)\n",
        "assert f() == Fraction(1, 2)",
    ),
    "counter": (
        "from collections import Counter\ndef f():\n    return Counter('aab')\n",
        "assert f() == {'a': 2, 'b': 1}",
    ),
    "enum": (
        "import enum\nclass C(enum.Enum):\n    A = 1\ndef f():\n    return C.A\n",
        "assert f() in {C.A}",
    ),
    "namedtuple": (
        "import collections\nP = collections.namedtuple('P', 'x y')\ndef f():\n    return P(1, 2)\n",
        "assert f() == (1, 2)",
    ),  # fmt: skip
    "decimal": (
        "from decimal import Decimal\ndef f():\n    return Decimal('1.5')\n",
        "assert abs(f() - 1) < 1",
    ),
    "plain class": ("class Box:\n    pass\nBOX = Box()\ndef f():\n    return BOX\n", "assert f() == BOX"),
}


@pytest.mark.parametrize("name", sorted(STDLIB_VALUES))
def test_strict_python_checks_accept_standard_library_values(docker_sandbox, name: str) -> None:
    code, test = STDLIB_VALUES[name]
    tests = f"from fractions import Fraction\n{test}\n"
    assert verify(docker_sandbox, "python", code, tests, extract=False).status == "passed"


MEMORY_HOGS = {
    "python": ("def add(a, b):\n    return len(bytearray(4 << 30))\n", CASES["python"].tests),
    "cpp": (
        "#include <vector>\nint add(int a, int b) {\n  std::vector<char> v(size_t(4) << 30, 1);\n"
        "  return v[7];\n}\n",
        CASES["cpp"].tests,
    ),
}


@pytest.mark.parametrize("language", sorted(MEMORY_HOGS))
def test_running_out_of_memory_is_a_memory_verdict(docker_sandbox, language: str) -> None:
    program, tests = MEMORY_HOGS[language]
    verdict = verify(docker_sandbox, language, program, tests, extract=False, limits=Limits(memory_mb=256))
    assert verdict.status == "memory", verdict
    assert verdict.passed == 0


MULTIPL_E = {  # test snippets as MultiPL-E writes them
    "typescript": (
        "function add(x: number, y: number): number {\n  return x + y;\n}\n",
        "declare var require: any;\nconst assert = require('node:assert');\n\nfunction test() {\n"
        "  let candidate = add;\n  assert.deepEqual(candidate(0, 1),1);\n"
        "  assert.deepEqual(candidate(2, 3),5);\n}\n\n"
        "test();",
    ),
    "java": (
        "import java.util.*;\nclass Problem {\n    public static long add(long x, long y) {\n"
        "        return x + y;\n"
        "    }\n}\n",
        "public class Main {\n    public static void main(String[] args) {\n"
        "    assert(Problem.add((0l), (1l)) == (1l));\n    assert(Problem.add((2l), (3l)) == (5l));\n"
        "    }\n\n}\n",
    ),
    "cpp": (
        "#include<vector>\nusing namespace std;\nlong add(long x, long y) {\n    return x + y;\n}\n",
        "#undef NDEBUG\n#include <assert.h>\nint main() {\n    auto candidate = add;\n"
        "    assert(candidate((0), (1)) == (1));\n    assert(candidate((2), (3)) == (5));\n}\n",
    ),
}


@pytest.mark.parametrize("language", sorted(MULTIPL_E))
def test_multipl_e_test_snippets_run_as_written(docker_sandbox, language: str) -> None:
    program, tests = MULTIPL_E[language]
    verdict = verify(docker_sandbox, language, program, tests, extract=False)
    assert verdict.status == "passed" and verdict.total == 2, verdict


def test_a_600_kb_python_test_source_verifies_within_the_default_timeout(docker_sandbox) -> None:
    # A public benchmark's extended inputs: 21 asserts over large literal lists. Preparing them
    # once cost tests x source size (83 s on the host, and a timeout in the sandbox).
    rng = random.Random(12)
    values = [[rng.randrange(10**6) for _ in range(3_500)] for _ in range(21)]
    tests = "def check(candidate):\n" + "".join(
        f"    assert candidate({v!r}) == {sum(v)}\n" for v in values
    ) + "\ncheck(total)\n"  # fmt: skip
    assert len(tests) > 500_000
    verdict = verify(
        docker_sandbox, "python", "def total(values):\n    return sum(values)\n", tests, extract=False
    )
    assert (verdict.status, verdict.passed, verdict.total) == ("passed", 21, 21), verdict.message
    wrong = verify(
        docker_sandbox, "python", "def total(values):\n    return len(values)\n", tests, extract=False
    )
    assert (wrong.status, wrong.passed) == ("failed", 0)
