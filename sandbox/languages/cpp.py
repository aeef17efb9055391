"""C++ (g++ 12, C++17).

Test format: C++ source with an `int main()` that checks with `assert(...)` (the HumanEval-X /
MultiPL-E style); every line holding an assert is one test. The tests' `#include` lines are
moved above the program; the program's own `main`, if any, is renamed away. The tests are
compiled into the program and their source is deleted right after compiling.
"""

from __future__ import annotations

import re

from sandbox.execution import Limits, Step
from sandbox.languages.base import Plan, Runner, harness_source, new_nonce
from sandbox.languages.clike import append_to_body, assertion_lines, line_names, mask

SOURCE = "program.cpp"
COMPILE = ("g++", "-std=c++17", "-O1", "-pipe", "-o", "prog", SOURCE)
_INCLUDE = re.compile(r"^[ \t]*#[ \t]*include[^\n]*$", re.MULTILINE)
_MAIN = r"\bmain\b"


def compile_and_forget(command: tuple[str, ...], *paths: str) -> tuple[str, ...]:
    """A shell command that compiles, then deletes `paths` (the tests) whatever the outcome."""
    quoted = " ".join(f"'{part}'" for part in command)
    return ("sh", "-c", f"{quoted}; rc=$?; rm -f {' '.join(paths)}; exit $rc")


class CppRunner(Runner):
    """C++17 with g++."""

    name = "cpp"
    aliases = ("cpp", "c++", "cc", "cxx")

    def plan_tests(self, code: str, tests: str, limits: Limits) -> Plan:
        lines = assertion_lines(tests, r"\bassert\s*\(")
        masked = mask(tests)
        includes = [tests[m.start() : m.end()] for m in _INCLUDE.finditer(masked)]
        body = _INCLUDE.sub(lambda m: "", tests)  # keep line numbers: the include lines become empty
        # Renamed, the tests' main no longer returns 0 implicitly (falling off the end is UB).
        body = append_to_body(body, r"\bint\s+main\s*\([^)]*\)\s*\{", " return 0; ")
        source = "\n".join(
            [
                harness_source("cpp_harness.hpp").decode(),
                *includes,
                "#define main assay_program_main",
                '#line 1 "solution.cpp"',
                code,
                "#undef main",
                "#undef assert",
                "#define assert(...) ::assay::check(static_cast<bool>(__VA_ARGS__), __LINE__, #__VA_ARGS__)",
                "#define main assay_tests_main",
                '#line 1 "tests.cpp"',
                body,
                "#undef main",
                "int main() { return ::assay::run(assay_tests_main); }",
                "",
            ]
        )
        nonce = new_nonce()
        return self.compiled_plan(
            ((SOURCE, source.encode()),), compile_and_forget(COMPILE, SOURCE), ("./prog",),
            nonce.encode(), nonce, line_names(tests, lines), lines, limits,
        )  # fmt: skip

    def stdio_program(
        self, code: str
    ) -> tuple[tuple[tuple[str, bytes], ...], tuple[Step, ...], tuple[str, ...]]:
        return ((SOURCE, code.encode()),), (self.compile_step(COMPILE),), ("./prog",)
