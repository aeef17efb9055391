"""Java 17 (OpenJDK).

Test format: Java source of a class with `public static void main(String[] args)` that checks
with `assert` statements (`assert cond;` or `assert cond : message;`); every line holding an
assert is one test. The runner rewrites each assert into a harness call (Java's own assertions
are off by default), compiles the program, the tests and the harness together, deletes the
tests' source, and runs the harness, which calls the tests' main. The program's class keeps
its name (the file is named after its public class, `Solution.java` by default).
"""

from __future__ import annotations

import re

from sandbox.execution import Limits, Step
from sandbox.languages.base import InvalidInput, Plan, ProgramRejected, Runner, harness_source, new_nonce
from sandbox.languages.clike import (
    LineIndex,
    assertion_lines,
    find_statement_end,
    line_names,
    mask,
    split_message,
)
from sandbox.languages.cpp import compile_and_forget

JVM = (
    "-Xmx256m",
    "-Xss16m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:CICompilerCount=1",
    "-Xshare:auto",
)
JAVAC = (
    "javac",
    *(f"-J{flag}" for flag in JVM if flag != "-Xss16m"),
    "-encoding",
    "UTF-8",
    "-nowarn",
    "-d",
    ".",
)
_PUBLIC_CLASS = re.compile(r"\bpublic\s+(?:final\s+|abstract\s+)*(?:class|interface|enum|record)\s+(\w+)")
_ANY_CLASS = re.compile(r"\b(?:class|interface|enum|record)\s+(\w+)")
_MAIN = re.compile(r"\bpublic\s+static\s+void\s+main\s*\(")
_ASSERT = re.compile(r"\bassert\b")


def rewrite_asserts(tests: str) -> str:
    """Every `assert cond [: message];` statement becomes `Assay.check((cond), LINE[, message]);`."""
    masked = mask(tests)
    index = LineIndex(masked)
    pieces, position = [], 0
    for match in _ASSERT.finditer(masked):
        if match.start() < position:
            continue
        end = find_statement_end(masked, match.end())
        if end < 0:
            continue
        split = split_message(masked, match.end(), end)
        line = index.line(match.start())
        condition = tests[match.end() : split if split >= 0 else end]
        message = f", {tests[split + 1 : end]}" if split >= 0 else ""
        # Newlines inside the statement are kept so later line numbers do not move.
        extra = "\n" * tests.count("\n", match.start(), end)
        pieces += [
            tests[position : match.start()],
            f"Assay.check(({condition.strip()}), {line}{message});{extra}",
        ]
        position = end + 1
    return "".join(pieces) + tests[position:]


def class_name(source: str, default: str) -> str:
    """The source's public class (the file must be named after it), else `default`."""
    match = _PUBLIC_CLASS.search(mask(source))
    return match.group(1) if match else default


class JavaRunner(Runner):
    """Java 17."""

    name = "java"
    aliases = ("java",)
    limit_address_space = False  # the JVM reserves far more address space than it uses
    compile_timeout_s = 60.0

    def plan_tests(self, code: str, tests: str, limits: Limits) -> Plan:
        lines = assertion_lines(tests, r"\bassert\b")
        masked = mask(tests)
        main = _MAIN.search(masked)
        if main is None:
            raise InvalidInput("the Java tests need a class with `public static void main(String[] args)`")
        classes = [m for m in _ANY_CLASS.finditer(masked) if m.start() < main.start()]
        if not classes:
            raise InvalidInput("the Java tests' main is not inside a class")
        tests_class = classes[-1].group(1)
        program_file = f"{class_name(code, 'Solution')}.java"
        tests_file = f"{class_name(tests, tests_class)}.java"
        if tests_class == "Assay":
            raise InvalidInput("the tests' class must not be named Assay (the harness's)")
        if tests_file == program_file or class_name(code, "") == "Assay":
            raise ProgramRejected(
                f"the program's public class clashes with the tests' or the harness's ({program_file})"
            )
        harness = harness_source("Assay.java").decode().replace("TESTS_CLASS", tests_class)
        nonce = new_nonce()
        files = (
            (program_file, code.encode()),
            (tests_file, rewrite_asserts(tests).encode()),
            ("Assay.java", harness.encode()),
        )
        return self.compiled_plan(
            files, compile_and_forget((*JAVAC, program_file, tests_file, "Assay.java"), tests_file),
            ("java", *JVM, "-cp", ".", "Assay"), nonce.encode(), nonce, line_names(tests, lines),
            lines, limits,
        )  # fmt: skip

    def stdio_program(
        self, code: str
    ) -> tuple[tuple[tuple[str, bytes], ...], tuple[Step, ...], tuple[str, ...]]:
        masked = mask(code)
        main = _MAIN.search(masked)
        if main is None:
            raise InvalidInput("the Java program needs a `public static void main(String[] args)`")
        classes = [m for m in _ANY_CLASS.finditer(masked) if m.start() < main.start()]
        main_class = classes[-1].group(1) if classes else "Main"
        source = f"{class_name(code, main_class)}.java"
        return (
            ((source, code.encode()),),
            (self.compile_step((*JAVAC, source)),),
            ("java", *JVM, "-cp", ".", main_class),
        )
