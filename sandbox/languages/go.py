"""Go 1.19.

Test format: Go source with a `func main()` that checks with `assert(cond bool)` (a function the
harness provides); every line holding an assert is one test. `package` clauses are set to
`package main`; the program's own `main`, if any, is renamed away. The program, the tests and
the harness are built together (GOPATH mode, no network, no cgo) and the tests' source is
deleted right after the build.
"""

from __future__ import annotations

import re

from sandbox.execution import Limits, Step
from sandbox.languages.base import Plan, Runner, harness_source, new_nonce
from sandbox.languages.clike import assertion_lines, line_names, rename_function
from sandbox.languages.cpp import compile_and_forget

_PACKAGE = re.compile(r"^[ \t]*package[ \t]+\w+[ \t]*;?[ \t]*$", re.MULTILINE)
ENV = (
    ("GOCACHE", "/tmp/go-cache"),
    ("GOPATH", "/tmp/go-path"),
    ("GO111MODULE", "off"),
    ("CGO_ENABLED", "0"),
    ("GOFLAGS", "-buildvcs=false"),
    ("GOTOOLCHAIN", "local"),
)
BUILD = ("go", "build", "-o", "prog", ".")
MASK = {"backtick_strings": True}


def as_main_package(source: str) -> str:
    """The source with its package clause replaced by `package main` (added if missing)."""
    if _PACKAGE.search(source):
        return _PACKAGE.sub("package main", source, count=1)
    return "package main; " + source  # on the first line, so line numbers do not move


class GoRunner(Runner):
    """Go 1.19."""

    name = "go"
    aliases = ("go", "golang")
    limit_address_space = False  # the Go runtime and toolchain reserve large virtual ranges
    compile_timeout_s = 60.0

    def plan_tests(self, code: str, tests: str, limits: Limits) -> Plan:
        tests_main = as_main_package(tests)
        lines = assertion_lines(tests_main, r"\bassert\s*\(", **MASK)
        program = rename_function(
            as_main_package(code), r"\bfunc\s+main\s*\(", "func assayProgramMain(", **MASK
        )
        tests_main = rename_function(tests_main, r"\bfunc\s+main\s*\(", "func assayTestsMain(", **MASK)
        nonce = new_nonce()
        files = (
            ("aaa_assay_harness.go", harness_source("assay_harness.go")),
            ("solution.go", program.encode()),
            ("assay_tests.go", tests_main.encode()),
        )
        return self.compiled_plan(
            files, compile_and_forget(BUILD, "assay_tests.go"), ("./prog",), nonce.encode(), nonce,
            line_names(tests, lines), lines, limits, compile_env=ENV,
        )  # fmt: skip

    def stdio_program(
        self, code: str
    ) -> tuple[tuple[tuple[str, bytes], ...], tuple[Step, ...], tuple[str, ...]]:
        return (
            (("main.go", as_main_package(code).encode()),),
            (self.compile_step(BUILD, env=ENV),),
            ("./prog",),
        )
