"""assay's Python test harness. Runs inside the sandbox as `python3 -I -S -B harness.py`.

Standard library only (it runs under the image's python3); the host imports `prepare` from this
file to know the tests before anything runs, so the count of tests never depends on the program.

Protocol. stdin carries one JSON object {"nonce", "code", "tests", "strict"}: the tests never
touch the file system. The harness reads all of stdin, closes it, and moves its own stdout to a
private descriptor: the program's prints go to stderr. Each result is a line
`@@assay:<nonce> <json>` on that descriptor: {"t": "test", "i": index, "ok": bool, "msg": str}
per test (a test's later failure overrides its pass), {"t": "compile_error", "msg"} when the
program does not parse, {"t": "fatal", "msg"} when it raised at import, and {"t": "done", "n"}
once every test has run. Without the done record the host fails every unreported test.

Test formats (any mix, discovered by `prepare`):
- `assert` statements outside test functions (MBPP lists, HumanEval's `check(candidate)` body):
  each statement is one test; it is evaluated without stopping the rest, and passes when every
  evaluation of it passed (asserts in loops) and it ran at least once.
- pytest-style functions `def test_*()` without parameters: one test each.
- `unittest.TestCase` subclasses: one test per `test*` method (setUp, subTest, skips as unittest).

Against reward hacks (see docs/sandbox.md, "Languages and verdicts"):
- exiting early (sys.exit, os._exit, SystemExit at import) leaves no done record: failure;
- printed "OK" lines lack the nonce, which the program cannot see: stdin is closed, frame and
  gc introspection (sys._getframe, tb_frame, gi_frame, gc.get_objects, ...) and ctypes are
  refused by an audit hook installed before the program loads, which cannot be removed;
- patched builtins, unittest or harness helpers are detected after the import and after every
  test (identity snapshots) and fail the run; swapping the code of a trusted function is refused;
- "strict" comparisons: every value that reaches ==, <, in, arithmetic, a truth test or a
  unittest assert in the tests must get its comparison, truth and arithmetic behaviour from
  Python or the standard library (checked recursively through containers), so an object whose
  __eq__ always says True fails the test instead of passing it.
"""

from __future__ import annotations

import ast
import builtins
import json
import os
import sys
import threading
import types

MARK = "@@assay:"
TEST_CASE_BASES = ("TestCase", "IsolatedAsyncioTestCase")
# Dunders through which a value can fake a comparison, a truth test or an arithmetic check.
GUARDED = (
    "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__hash__", "__bool__", "__len__",
    "__contains__", "__abs__", "__neg__", "__pos__", "__round__", "__add__", "__radd__", "__sub__",
    "__rsub__", "__mul__", "__rmul__", "__truediv__", "__rtruediv__", "__floordiv__",
    "__rfloordiv__", "__mod__", "__rmod__", "__pow__", "__rpow__",
)  # fmt: skip
# Imported before the program so their classes' dunders are known as trusted.
# Imported before the program so their classes' dunders are known as trusted (a type from a module
# imported later that implements comparisons in Python, rare in tests, fails the strict check).
STDLIB_PRELOAD = (
    "collections", "decimal", "fractions", "datetime", "re", "math", "itertools", "functools",
    "heapq", "bisect", "operator", "numbers", "enum",
)  # fmt: skip
ASSERT_METHODS_TRUTH = ("assertTrue", "assertFalse")
CHECKED_CALLS = ("abs", "round", "isclose", "fabs")
FRAME_ATTRIBUTES = ("tb_frame", "gi_frame", "cr_frame", "ag_frame")
BLOCKED_EVENTS = (
    "sys._getframe", "sys._current_frames", "sys._current_exceptions", "sys.settrace",
    "sys.setprofile", "gc.get_objects", "gc.get_referrers", "gc.get_referents",
)  # fmt: skip
BLOCKED_MODULES = ("ctypes", "_ctypes", "_testcapi", "_testinternalcapi")
VALUE_BUDGET = 200_000  # values inspected per strict check before giving up (accepting)


# ---------------------------------------------------------------- discovery and rewriting


def _base_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else None


def _is_test_case(node: ast.stmt) -> bool:
    return isinstance(node, ast.ClassDef) and any(_base_name(b) in TEST_CASE_BASES for b in node.bases)


def _is_test_function(node: ast.stmt) -> bool:
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or not node.name.startswith("test"):
        return False
    args = node.args
    required = len(args.posonlyargs) + len(args.args) - len(args.defaults)
    return required == 0 and all(d is not None for d in args.kw_defaults)


def _short(text: str, limit: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Rewriter(ast.NodeTransformer):
    """Wraps values in strict checks and turns free-standing asserts into recorded checks."""

    def __init__(self, assert_ids: dict[int, int], strict: bool) -> None:
        self.assert_ids, self.strict = assert_ids, strict

    def _checked(self, node: ast.expr, helper: str = "_assay_v") -> ast.expr:
        if not self.strict:
            return node
        return ast.copy_location(ast.Call(ast.Name(helper, ast.Load()), [node], []), node)

    def visit_Compare(self, node: ast.Compare) -> ast.expr:
        self.generic_visit(node)
        if all(isinstance(op, ast.Is | ast.IsNot) for op in node.ops):
            return node
        node.left = self._checked(node.left)
        node.comparators = [self._checked(c) for c in node.comparators]
        return node

    def visit_BinOp(self, node: ast.BinOp) -> ast.expr:
        self.generic_visit(node)
        node.left, node.right = self._checked(node.left), self._checked(node.right)
        return node

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.expr:
        self.generic_visit(node)
        node.operand = self._checked(node.operand)
        return node

    def visit_Call(self, node: ast.Call) -> ast.expr:
        self.generic_visit(node)
        name = _base_name(node.func)
        if (
            name in CHECKED_CALLS
            or (name or "").startswith("assert")
            and isinstance(node.func, ast.Attribute)
        ):
            node.args = [self._checked(arg) for arg in node.args]
        return node

    def visit_Assert(self, node: ast.Assert) -> ast.stmt:
        self.generic_visit(node)
        test = self._checked(node.test)
        index = self.assert_ids.get(id(node))
        if index is None:  # inside a test function or method: raise as usual
            node.test = test
            return node
        no_args = ast.arguments(posonlyargs=[], args=[], vararg=None, kwonlyargs=[], kw_defaults=[],
                                kwarg=None, defaults=[])  # fmt: skip
        message = node.msg if node.msg is not None else ast.Constant(None)
        call = ast.Call(
            ast.Name("_assay_assert", ast.Load()),
            [ast.Constant(index), ast.Lambda(no_args, test), ast.Lambda(no_args, message)],
            [],
        )
        return ast.copy_location(ast.Expr(call), node)


# CPython 3.11 counts ast.parse's recursion depth in state shared by all threads; when a garbage
# collection inside one parse runs a finalizer and another thread parses meanwhile, the count
# goes wrong and ast.parse raises "AST constructor recursion depth mismatch" (CPython gh-106905).
# verify_many prepares tests from many threads, so parses take turns. Re-entrant: a finalizer
# may itself parse.
_PARSE_LOCK = threading.RLock()


def parse_tests(source: str) -> ast.Module:
    """ast.parse, one thread at a time (see _PARSE_LOCK)."""
    with _PARSE_LOCK:
        return ast.parse(source, "<tests>")


def prepare(source: str, strict: bool = True) -> tuple[list[dict], ast.Module]:
    """Find the tests in a test source and rewrite it for the harness.

    Returns:
        The tests in order, each {"kind": "assert" | "function" | "method", "name": ...} (methods
        also carry "cls" and "method"), and the rewritten module.

    Raises:
        SyntaxError: the test source does not parse.
    """
    tree = parse_tests(source)
    found: list[tuple[tuple[int, int], dict]] = []
    assert_nodes: list[ast.Assert] = []
    for stmt in tree.body:
        if _is_test_case(stmt):
            for member in stmt.body:  # type: ignore[attr-defined]
                if isinstance(member, ast.FunctionDef | ast.AsyncFunctionDef) and member.name.startswith(
                    "test"
                ):
                    name = f"{stmt.name}.{member.name}"  # type: ignore[attr-defined]
                    test = {"kind": "method", "name": name, "cls": stmt.name, "method": member.name}  # type: ignore[attr-defined]
                    found.append(((member.lineno, member.col_offset), test))
        elif _is_test_function(stmt):
            found.append(((stmt.lineno, stmt.col_offset), {"kind": "function", "name": stmt.name}))  # type: ignore[attr-defined]
        else:
            # `assert True, "..."` (HumanEval has a few) checks nothing: not a test.
            assert_nodes += [
                node
                for node in ast.walk(stmt)
                if isinstance(node, ast.Assert) and not isinstance(node.test, ast.Constant)
            ]
    for node in assert_nodes:
        text = ast.get_source_segment(source, node.test) or ""
        test = {"kind": "assert", "name": f"line {node.lineno}: {_short(text)}", "line": node.lineno}
        found.append(((node.lineno, node.col_offset), test))
    found.sort(key=lambda item: item[0])
    tests = [test for _, test in found]
    by_position = {(n.lineno, n.col_offset): n for n in assert_nodes}
    assert_ids = {
        id(by_position[position]): index
        for index, (position, test) in enumerate(found)
        if test["kind"] == "assert"
    }
    rewritten = ast.fix_missing_locations(_Rewriter(assert_ids, strict).visit(tree))
    return tests, rewritten


# ---------------------------------------------------------------- strict values


def _trusted_functions() -> tuple[set[int], list]:
    """Ids of the Python functions implementing GUARDED dunders of the classes imported so far
    (the program's classes come later and are not trusted), and the objects, kept alive.

    Each class's own namespace is enough: an inherited implementation is found in the
    namespace of the class that defines it, which is walked too."""
    functions: set[int] = set()
    seen: set[int] = set()
    keep: list = []
    roots = (*STDLIB_PRELOAD, "builtins")
    dict_of = type.__dict__["__dict__"].__get__
    function_type = types.FunctionType
    for name, module in list(sys.modules.items()):
        if name.partition(".")[0] not in roots:
            continue
        for value in list(getattr(module, "__dict__", {}).values()):
            if not isinstance(value, type) or id(value) in seen:
                continue
            seen.add(id(value))
            namespace = dict_of(value)
            for dunder in GUARDED:
                impl = namespace.get(dunder)
                if type(impl) is function_type:
                    functions.add(id(impl))
                    keep.append(impl)
    return functions, keep


def make_checker(trusted: set[int]):  # noqa: ANN201 - returns the check function
    """The strict value check: raises AssertionError for a value whose comparison, truth or
    arithmetic behaviour the program defined, looking through builtin containers."""
    import collections

    scalars = frozenset({int, float, complex, bool, str, bytes, type(None), type(...), range})
    # C slots and methods check the type of self, so borrowing them fakes nothing; a builtin
    # function (operator.truth as __eq__) would be called without self, so it is not trusted.
    native = (types.WrapperDescriptorType, types.MethodDescriptorType)
    deque = collections.deque
    sequences = ((list, list.__iter__), (tuple, tuple.__iter__), (set, set.__iter__),
                 (frozenset, frozenset.__iter__), (deque, deque.__iter__))  # fmt: skip
    dict_items = dict.items
    mro_of = type.__dict__["__mro__"].__get__
    dict_of = type.__dict__["__dict__"].__get__
    the_type, ident, subclass = type, id, issubclass

    def problem(cls: type) -> str | None:
        for name in GUARDED:
            impl = None
            for klass in mro_of(cls):
                namespace = dict_of(klass)
                if name in namespace:
                    impl = namespace[name]
                    break
            if impl is None or the_type(impl) in native:
                continue
            if the_type(impl) is types.FunctionType and ident(impl) in trusted:
                continue
            return name
        return None

    def check(value: object) -> object:
        stack, seen, budget = [value], set(), VALUE_BUDGET
        while stack and budget > 0:
            item = stack.pop()
            budget -= 1
            cls = the_type(item)
            if cls in scalars:
                continue
            name = problem(cls)
            if name is not None:
                raise AssertionError(
                    f"strict check: a {cls.__qualname__} value reached a comparison, but its {name} "
                    "is defined by the program, not by Python or the standard library"
                )
            if ident(item) in seen:
                continue
            seen.add(ident(item))
            if subclass(cls, dict):
                for key, element in dict_items(item):
                    stack += (key, element)
                continue
            for base, iterate in sequences:
                if subclass(cls, base):
                    stack.extend(iterate(item))
                    break
        return value

    return check


# ---------------------------------------------------------------- running


def _audit_hook(armed: list[bool]):  # noqa: ANN201
    def hook(event: str, args: tuple) -> None:
        if not armed[0]:
            return
        if event in BLOCKED_EVENTS:
            raise ValueError(f"{event} is not available in the assay sandbox")
        if event == "object.__getattr__" and args[1] in FRAME_ATTRIBUTES:
            raise AttributeError(f"{args[1]} is not available in the assay sandbox")
        if event == "object.__setattr__" and args[1] == "__code__":
            raise AttributeError("replacing a function's code is not allowed in the assay sandbox")
        if event == "import" and args[0] in BLOCKED_MODULES:
            raise ImportError(f"module {args[0]} is not available in the assay sandbox")
        path = args[0] if event == "open" and isinstance(args[0], str | bytes) else None
        if path is not None and os.fsdecode(path).startswith("/proc/") and os.fsdecode(path).endswith("/mem"):
            raise PermissionError("process memory is not readable in the assay sandbox")

    return hook


def _describe(error: BaseException) -> str:
    try:
        text = str(error)
    except BaseException:  # noqa: BLE001 - a hostile __str__ must not stop the harness
        text = "<unprintable>"
    name = type(error).__name__
    return f"{name}: {text}"[:2000] if text else name


def _read_stdin() -> bytes:
    chunks = []
    while chunk := os.read(0, 1 << 20):
        chunks.append(chunk)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    return b"".join(chunks)


def main() -> None:
    """Read the request, run the program and its tests, write the records, exit 0."""
    payload = json.loads(_read_stdin())
    out = os.dup(1)
    os.dup2(2, 1)  # the program's prints go to stderr; records to `out` only
    prefix = f"\n{MARK}{payload['nonce']} ".encode()
    del payload["nonce"]

    def emit(record: dict) -> None:
        data = prefix + json.dumps(record).encode() + b"\n"
        while data:
            data = data[os.write(out, data) :]

    tests, module_ast = prepare(payload["tests"], bool(payload.get("strict", True)))
    try:
        program = compile(payload["code"], "solution.py", "exec")
    except (SyntaxError, ValueError) as err:
        emit({"t": "compile_error", "msg": _describe(err)})
        emit({"t": "done", "n": len(tests)})
        os._exit(0)
    test_code = compile(module_ast, "tests.py", "exec")

    for name in STDLIB_PRELOAD:
        __import__(name)
    uses_unittest = any(test["kind"] == "method" for test in tests)
    if uses_unittest:  # 20 ms to import: only when the tests need it
        import traceback
        import unittest

        traceback.clear_frames = lambda tb: None  # assertRaises clears frames; tb_frame is refused below
    trusted, _keep = _trusted_functions()
    check = make_checker(trusted)
    builtins_snapshot = dict(builtins.__dict__)
    watched, watched_modules = {}, {}
    if uses_unittest:
        watched = {
            id(c): (c, dict(c.__dict__)) for c in (unittest.TestCase, unittest.TestResult, unittest.TestSuite)
        }
        watched_modules = {
            name: (sys.modules[name], dict(vars(sys.modules[name]))) for name in ("unittest", "unittest.case")
        }

    status: dict[int, bool] = {}  # test index -> passed so far

    def record(index: int, ok: bool, message: str = "") -> None:
        before = status.get(index)
        if before is False or before is ok:
            return  # a failure is final; a repeated pass says nothing new
        status[index] = ok
        emit({"t": "test", "i": index, "ok": ok, "msg": message[:2000]})

    def changed(current: dict | types.MappingProxyType, snapshot: dict) -> bool:
        # Keys are strings; values by identity only: `==` could run the program's __eq__.
        return current.keys() != snapshot.keys() or any(current.get(k) is not v for k, v in snapshot.items())

    def tampering() -> str | None:
        if changed(builtins.__dict__, builtins_snapshot):
            builtins.__dict__.clear()
            builtins.__dict__.update(builtins_snapshot)
            return "the program modified builtins"
        for cls, snapshot in watched.values():
            if changed(cls.__dict__, snapshot):
                return f"the program modified {cls.__module__}.{cls.__qualname__}"
        for name, (module, snapshot) in watched_modules.items():
            if sys.modules.get(name) is not module or any(
                vars(module).get(k) is not v for k, v in snapshot.items()
            ):
                return f"the program modified the {name} module"
        if namespace and any(namespace.get(k) is not v for k, v in helpers.items()):
            return "the program modified the test harness"
        return None

    def assert_statement(index: int, test: types.FunctionType, message: types.FunctionType) -> None:
        try:
            ok = bool(test())
            detail = "" if ok else str(message() or f"assertion failed: {tests[index]['name']}")
        except BaseException as err:  # noqa: BLE001 - SystemExit and friends fail the test
            ok, detail = False, _describe(err)
        problem = tampering()
        if problem:
            ok, detail = False, problem
        record(index, ok, detail)

    helpers = {"_assay_v": check, "_assay_assert": assert_statement}

    class Result(unittest.TestResult if uses_unittest else object):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.problems: list[str] = []

        def addError(self, test, err) -> None:  # noqa: ANN001, N802
            self.problems.append(_describe(err[1]))

        def addFailure(self, test, err) -> None:  # noqa: ANN001, N802
            self.problems.append(_describe(err[1]))

        def addSubTest(self, test, subtest, err) -> None:  # noqa: ANN001, N802
            if err is not None:
                self.problems.append(f"{subtest._subDescription()}: {_describe(err[1])}")

        def addSkip(self, test, reason) -> None:  # noqa: ANN001, N802
            self.problems.append(f"skipped: {reason}")

        def addExpectedFailure(self, test, err) -> None:  # noqa: ANN001, N802
            pass

        def addUnexpectedSuccess(self, test) -> None:  # noqa: ANN001, N802
            self.problems.append("unexpected success")

    armed = [False]
    sys.addaudithook(_audit_hook(armed))
    solution = types.ModuleType("solution")
    solution.__file__ = "solution.py"
    sys.modules["solution"] = solution
    sys.modules["__main__"] = solution  # the harness itself is not importable from the program
    namespace: dict = {}
    armed[0] = True
    try:
        exec(program, solution.__dict__)  # noqa: S102 - running the program is the point
        import_error = None
    except BaseException as err:  # noqa: BLE001 - SystemExit at import fails every test
        import_error = f"the program raised {_describe(err)} when loaded"
    import_error = import_error or tampering()
    if import_error:
        emit({"t": "fatal", "msg": import_error, "phase": "load"})
        emit({"t": "done", "n": len(tests)})
        os._exit(0)

    namespace.update(solution.__dict__)
    namespace.update(helpers, __name__="assay_tests", __file__="tests.py")
    try:
        exec(test_code, namespace)  # noqa: S102
    except BaseException as err:  # noqa: BLE001 - a broken test module fails the tests not yet reached
        emit({"t": "fatal", "msg": f"the tests stopped: {_describe(err)}"})
    for index, test in enumerate(tests):
        if test["kind"] == "function":
            function = namespace.get(test["name"])
            try:
                if not callable(function):
                    raise NameError(f"test function {test['name']} is not defined")
                outcome = function()
                if type(outcome) is types.CoroutineType:
                    import asyncio

                    asyncio.run(outcome)
                ok, detail = True, ""
            except BaseException as err:  # noqa: BLE001
                ok, detail = False, _describe(err)
        elif test["kind"] == "method":
            cls = namespace.get(test["cls"])
            try:
                if not (isinstance(cls, type) and issubclass(cls, unittest.TestCase)):
                    raise NameError(f"{test['cls']} is not a unittest.TestCase class")
                result = Result()
                unittest.TestSuite([cls(test["method"])]).run(result)  # the suite runs setUpClass
                ok, detail = (not result.problems and result.testsRun == 1), "; ".join(result.problems)
            except BaseException as err:  # noqa: BLE001
                ok, detail = False, _describe(err)
        else:
            if index not in status:
                record(index, False, "not reached")
            continue
        problem = tampering()
        record(index, ok and not problem, problem or detail)
    emit({"t": "done", "n": len(tests)})
    os._exit(0)  # skip the program's atexit handlers and finalizers


if __name__ == "__main__":
    main()
