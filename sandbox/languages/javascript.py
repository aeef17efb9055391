"""JavaScript (Node 18) and TypeScript (tsc 4.8, then Node).

Test format: statements using Node's `assert` API (`assert(x)`, `assert.strictEqual(a, b)`,
`assert.deepStrictEqual(a, b)`, `assert.deepEqual`, `assert.equal`, `assert.throws`, ...), as in
MultiPL-E (`const assert = require("node:assert"); ... test();`). Every line holding an assert
call is one test. The runner rewrites each `assert(` / `assert.x(` call to the harness's own
assertions for that line; the program runs as a global script (its `export` keywords are
dropped), the tests in a strict-mode function after it, and travel on stdin (JavaScript) or are
deleted before the program starts (TypeScript, which compiles them with the program).
"""

from __future__ import annotations

import json
import re

from sandbox.execution import ExecRequest, Limits, Step
from sandbox.languages.base import Plan, Runner, harness_source, new_nonce
from sandbox.languages.clike import LineIndex, assertion_lines, line_names, mask
from sandbox.languages.cpp import compile_and_forget

NODE = ("node", "--max-old-space-size=256", "--stack-size=8192")
HARNESS = "assay_harness.js"
MASK = {"backtick_strings": True}
_ASSERT_CALL = r"(?<![\w$.])assert\s*(?=[.(])"
_DECLARATION = r"(?:async\s+)?(?:function|class|const|let|var|interface|type|enum)\b"
_EXPORT = re.compile(rf"^([ \t]*)export\s+(?:default\s+)?(?={_DECLARATION})", re.MULTILINE)


def rewrite_asserts(tests: str) -> str:
    """`assert(` and `assert.name(` calls become `__assay(LINE)(` and `__assay(LINE).name(`."""
    masked = mask(tests, **MASK)
    index = LineIndex(masked)
    pieces, position = [], 0
    for match in re.finditer(_ASSERT_CALL, masked):
        line = index.line(match.start())
        pieces += [tests[position : match.start()], f"__assay({line})"]
        position = match.end()
    return "".join(pieces) + tests[position:]


def as_script(code: str) -> str:
    """The program without `export` keywords, so it runs as a global script."""
    return _EXPORT.sub(r"\1", code)


class JavaScriptRunner(Runner):
    """JavaScript on Node 18."""

    name = "javascript"
    aliases = ("javascript", "js", "node", "nodejs")
    limit_address_space = False  # V8 reserves large virtual ranges

    def plan_tests(self, code: str, tests: str, limits: Limits) -> Plan:
        lines = assertion_lines(tests, _ASSERT_CALL, **MASK)
        nonce = new_nonce()
        payload = {"nonce": nonce, "code": as_script(code), "tests": rewrite_asserts(tests)}
        run = self.run_step((*NODE, HARNESS), json.dumps(payload).encode())
        request = ExecRequest(files=((HARNESS, harness_source(HARNESS)),), steps=(run,), limits=limits)
        return Plan(request, line_names(tests, lines), nonce, notes={"lines": lines})

    def stdio_program(
        self, code: str
    ) -> tuple[tuple[tuple[str, bytes], ...], tuple[Step, ...], tuple[str, ...]]:
        return (
            (("main.js", code.encode()),),
            (self.compile_step(("node", "--check", "main.js")),),
            (*NODE, "main.js"),
        )


# `declare var` repeats are allowed with the same type, so tests that declare `require` themselves
# (MultiPL-E's `declare var require: any;`) still compile.
DECLARATIONS = """declare var require: any;
declare var module: any;
declare var exports: any;
declare var process: any;
declare function __assay(line: number): any;
"""
TSC = ("tsc", "--target", "es2020", "--lib", "es2020,dom", "--outDir", "out", "--pretty", "false")


class TypeScriptRunner(Runner):
    """TypeScript: type-checked and compiled by tsc 4.8, run on Node 18."""

    name = "typescript"
    aliases = ("typescript", "ts")
    limit_address_space = False
    compile_timeout_s = 60.0

    def plan_tests(self, code: str, tests: str, limits: Limits) -> Plan:
        lines = assertion_lines(tests, _ASSERT_CALL, **MASK)
        nonce = new_nonce()
        files = (
            ("assay.d.ts", DECLARATIONS.encode()),
            ("solution.ts", as_script(code).encode()),
            ("assay_tests.ts", rewrite_asserts(tests).encode()),
            (HARNESS, harness_source(HARNESS)),
        )
        payload = {"nonce": nonce, "code_file": "out/solution.js", "tests_file": "out/assay_tests.js"}
        compile_command = (*TSC, "assay.d.ts", "solution.ts", "assay_tests.ts")
        return self.compiled_plan(
            files, compile_and_forget(compile_command, "assay_tests.ts"), (*NODE, HARNESS),
            json.dumps(payload).encode(), nonce, line_names(tests, lines), lines, limits,
        )  # fmt: skip

    def stdio_program(
        self, code: str
    ) -> tuple[tuple[tuple[str, bytes], ...], tuple[Step, ...], tuple[str, ...]]:
        files = (("assay.d.ts", DECLARATIONS.encode()), ("main.ts", code.encode()))
        return files, (self.compile_step((*TSC, "assay.d.ts", "main.ts")),), (*NODE, "out/main.js")
