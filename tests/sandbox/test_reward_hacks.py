"""Programs that try to pass without being right must fail, through the real Docker sandbox.

Every hostile program here is wrong (it cannot compute the answer): each test checks that its
trick does not earn a single passed test, and the honest program next to it checks that the
same tests still pass when the answer is right."""

from textwrap import dedent

import pytest

from sandbox.verify import verify

pytestmark = pytest.mark.docker

TESTS = "assert answer(2) == 4\nassert answer(3) == 9\n"
RIGHT = "def answer(x):\n    return x * x\n"

PYTHON_HACKS = {
    "os._exit(0) at import": "import os\nos._exit(0)\n",
    "sys.exit(0) at import": "import sys\nsys.exit(0)\n",
    "SystemExit inside the call": "def answer(x):\n    raise SystemExit(0)\n",
    "printing OK and fake records": dedent("""
        import sys
        print('OK')
        print('@@assay: {"t": "done", "n": 2}')
        sys.stderr.write('Ran 2 tests\\n\\nOK\\n')
        def answer(x):
            print('PASSED')
            return None
    """),
    "__eq__ always true": dedent("""
        class Yes:
            def __eq__(self, other):
                return True
        def answer(x):
            return Yes()
    """),
    "int subclass with __eq__": dedent("""
        class I(int):
            def __eq__(self, other):
                return True
            __hash__ = int.__hash__
        def answer(x):
            return I(0)
    """),
    "borrowed builtin as __eq__": dedent("""
        import operator
        class T:
            __eq__ = operator.truth
        def answer(x):
            return T()
    """),
    "list of always-equal objects": dedent("""
        class Y:
            def __eq__(self, other):
                return True
        def answer(x):
            return [Y()]
    """),
    "patching builtins": dedent("""
        import builtins
        builtins.AssertionError = type('Nope', (Exception,), {})
        builtins.bool = lambda *a: True
        def answer(x):
            return 0
    """),
    "stealing the nonce through gc": dedent("""
        import gc, os
        found = set()
        try:
            for o in gc.get_objects():
                if isinstance(o, dict) and 'nonce' in o:
                    found.add(o['nonce'])
        except Exception:
            pass
        for n in found:
            for i in range(2):
                print(f'\\n@@assay:{n} {{"t": "test", "i": {i}, "ok": true}}')
            print(f'\\n@@assay:{n} {{"t": "done", "n": 2}}')
            os._exit(0)
    """),
    "stealing the nonce through frames": dedent("""
        import sys, os
        try:
            f = sys._getframe(1)
            while f:
                nonce = f.f_locals.get('payload', {}).get('nonce')
                if nonce:
                    print(f'\\n@@assay:{nonce} {{"t": "done", "n": 2}}')
                    os._exit(0)
                f = f.f_back
        except Exception:
            pass
        def answer(x):
            return 0
    """),
    "stealing frames through a traceback": dedent("""
        try:
            raise ValueError
        except ValueError as e:
            try:
                print(e.__traceback__.tb_frame.f_back.f_locals)
            except Exception:
                pass
        def answer(x):
            return 0
    """),
    "reading the tests from disk and stdin": dedent("""
        import os, re
        seen = ''
        for root in ('.', '/tmp', '/work'):
            for dirpath, _, files in os.walk(root):
                for name in files:
                    try:
                        seen += open(os.path.join(dirpath, name), errors='ignore').read()
                    except OSError:
                        pass
        try:
            seen += open('/proc/self/fd/0').read()
        except OSError:
            pass
        VALUES = {int(a): int(b) for a, b in re.findall(r'answer\\((\\d+)\\) == (\\d+)', seen)}
        def answer(x):
            return VALUES.get(x, 0)
    """),
}


@pytest.mark.parametrize("hack", sorted(PYTHON_HACKS))
def test_python_reward_hacks_earn_nothing(docker_sandbox, host_health, hack: str) -> None:
    verdict = verify(docker_sandbox, "python", PYTHON_HACKS[hack], TESTS, extract=False)
    assert verdict.passed == 0, verdict
    assert verdict.status != "passed"
    assert verify(docker_sandbox, "python", RIGHT, TESTS, extract=False).status == "passed"


UNITTEST_TESTS = dedent("""
    import unittest
    class T(unittest.TestCase):
        def test_two(self):
            self.assertEqual(answer(2), 4)
        def test_three(self):
            self.assertTrue(answer(3) == 9)
""")
UNITTEST_HACKS = {
    "patching TestCase.assertEqual": dedent("""
        import unittest
        unittest.TestCase.assertEqual = lambda *a, **k: None
        unittest.TestCase.assertTrue = lambda *a, **k: None
        def answer(x):
            return 0
    """),
    "patching TestResult": dedent("""
        import unittest
        unittest.TestResult.addFailure = lambda *a: None
        unittest.TestResult.wasSuccessful = lambda *a: True
        def answer(x):
            return 0
    """),
    "replacing the unittest module": dedent("""
        import sys, types
        fake = types.ModuleType('unittest')
        class TestCase:
            def assertEqual(self, *a):
                pass
            def assertTrue(self, *a):
                pass
        fake.TestCase = TestCase
        sys.modules['unittest'] = fake
        def answer(x):
            return 0
    """),
    "always-equal object": dedent("""
        class Y:
            def __eq__(self, other):
                return True
            def __bool__(self):
                return True
        def answer(x):
            return Y()
    """),
}


@pytest.mark.parametrize("hack", sorted(UNITTEST_HACKS))
def test_unittest_reward_hacks_earn_nothing(docker_sandbox, hack: str) -> None:
    verdict = verify(docker_sandbox, "python", UNITTEST_HACKS[hack], UNITTEST_TESTS, extract=False)
    assert verdict.passed == 0, verdict
    assert verify(docker_sandbox, "python", RIGHT, UNITTEST_TESTS, extract=False).status == "passed"


def test_arithmetic_and_harness_tampering_is_caught(docker_sandbox) -> None:
    area_tests = "assert abs(area(1) - 3.14159) < 1e-3\n"
    subtract = (
        "class Z:\n    def __sub__(self, o):\n        return 0.0\n    __rsub__ = __sub__\n"
        "def area(r):\n    return Z()\n"
    )
    verdict = verify(docker_sandbox, "python", subtract, area_tests, extract=False)
    assert (verdict.status, verdict.passed, verdict.total) == ("failed", 0, 1), verdict
    assert "strict check" in verdict.tests[0].message
    right_area = "def area(r):\n    return 3.14159 * r * r\n"
    honest = verify(docker_sandbox, "python", right_area, area_tests, extract=False)
    assert (honest.status, honest.passed, honest.total) == ("passed", 1, 1), honest
    # A test that hands the program a callable gives it nothing of the tests: the callable is a
    # handle to the judge's process, without globals to rebind.
    apply_tests = "assert apply(lambda v: v, 2) == 4\n"
    tamper = (
        "def apply(fn, x):\n    fn.__globals__['_assay_v'] = lambda v: True\n"
        "    fn.__globals__['_assay_assert'] = lambda *a: None\n    return 0\n"
    )
    verdict = verify(docker_sandbox, "python", tamper, apply_tests, extract=False)
    assert (verdict.status, verdict.passed, verdict.total) == ("failed", 0, 1), verdict
    assert "__globals__" in verdict.tests[0].message
    right_apply = "def apply(fn, x):\n    return fn(x) * x\n"
    honest = verify(docker_sandbox, "python", right_apply, apply_tests, extract=False)
    assert (honest.status, honest.passed, honest.total) == ("passed", 1, 1), honest


EARLY_EXIT = {
    "cpp": (
        '#include <cstdio>\n#include <cstdlib>\nstruct Quit { Quit() { printf("OK\\nAll tests passed\\n");'
        " fflush(stdout); exit(0); } } quit_now;\nint answer(int x) { return 0; }\n",
        "int main() {\n  assert(answer(2) == 4);\n  assert(answer(3) == 9);\n}\n",
    ),
    "java": (
        'class Solution { static { System.out.println("OK"); System.exit(0); }\n'
        "  static int answer(int x) { return 0; } }\n",
        "class Main {\n  public static void main(String[] a) {\n    assert Solution.answer(2) == 4;\n"
        "    assert Solution.answer(3) == 9;\n  }\n}\n",
    ),
    "go": (
        'import (\n\t"fmt"\n\t"os"\n)\n\nfunc init() { fmt.Println("PASS"); os.Exit(0) }\n\n'
        "func Answer(x int) int { return 0 }\n",
        "func main() {\n\tassert(Answer(2) == 4)\n\tassert(Answer(3) == 9)\n}\n",
    ),
    "rust": (
        'fn answer(x: i32) -> i32 { println!("test result: ok"); std::process::exit(0) }\n',
        "fn main() {\n    assert_eq!(answer(2), 4);\n    assert_eq!(answer(3), 9);\n}\n",
    ),
    "javascript": (
        "console.log('ok'); process.stdout.write('\\n@@assay:x {\"t\": \"done\"}\\n'); process.exit(0);\n"
        "function answer(x) { return 0; }\n",
        "const assert = require('assert');\nassert.strictEqual(answer(2), 4);\n"
        "assert.strictEqual(answer(3), 9);\n",
    ),
}


@pytest.mark.parametrize("language", sorted(EARLY_EXIT))
def test_exiting_early_with_a_success_message_fails(docker_sandbox, language: str) -> None:
    program, tests = EARLY_EXIT[language]
    verdict = verify(docker_sandbox, language, program, tests, extract=False)
    assert verdict.status == "runtime_error", verdict
    assert verdict.passed == 0


def test_javascript_patching_assert_and_primordials_fails(docker_sandbox) -> None:
    program = (
        "const real = require('assert');\nreal.strictEqual = () => {};\nreal.deepStrictEqual = () => {};\n"
        "Object.is = () => true;\nglobalThis.assert = () => {};\nArray.isArray = () => true;\n"
        "function answer(x) { return new Proxy({}, { get: () => 4 }); }\n"
    )
    tests = (
        "const assert = require('assert');\nassert.strictEqual(answer(2), 4);\n"
        "assert.deepStrictEqual(answer(3), 9);\n"
    )
    verdict = verify(docker_sandbox, "javascript", program, tests, extract=False)
    assert (verdict.status, verdict.passed, verdict.total) == ("failed", 0, 2), verdict
    right = "function answer(x) { return x * x; }\n"
    honest = verify(docker_sandbox, "javascript", right, tests, extract=False)
    assert (honest.status, honest.passed, honest.total) == ("passed", 2, 2), honest


MACRO_HACKS = {
    "cpp": (
        "#include <cassert>\n#undef assert\n#define assert(x) ((void)0)\nint answer(int x) { return 0; }\n",
        "#include <cassert>\nint main() {\n  assert(answer(2) == 4);\n  assert(answer(3) == 9);\n}\n",
    ),
    "rust": (
        "macro_rules! assert_eq { ($a:expr, $b:expr) => {}; }\nfn answer(x: i32) -> i32 { 0 }\n",
        "fn main() {\n    assert_eq!(answer(2), 4);\n    assert_eq!(answer(3), 9);\n}\n",
    ),
}


@pytest.mark.parametrize("language", sorted(MACRO_HACKS))
def test_redefining_the_assertion_macros_fails(docker_sandbox, language: str) -> None:
    program, tests = MACRO_HACKS[language]
    verdict = verify(docker_sandbox, language, program, tests, extract=False)
    assert verdict.status == "failed", verdict
    assert verdict.passed == 0 and verdict.total == 2
