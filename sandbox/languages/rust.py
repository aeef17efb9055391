"""Rust 1.63 (rustc, edition 2021, no crates).

Test format: Rust source with a `fn main()` that checks with `assert!`, `assert_eq!` and
`assert_ne!` (the MultiPL-E style); every line holding one is one test. The runner shadows those
macros with versions that report their line instead of panicking, renames the program's own
`main` away, and compiles one crate: the program, the harness, and the tests through
`include!`; the tests' source is deleted right after compiling. A panic in the program stops
the remaining assertions.
"""

from __future__ import annotations

from sandbox.execution import Limits, Step
from sandbox.languages.base import Plan, Runner, harness_source, new_nonce
from sandbox.languages.clike import assertion_lines, line_names, rename_function
from sandbox.languages.cpp import compile_and_forget

RUSTC = (
    "rustc",
    "--edition",
    "2021",
    "-C",
    "opt-level=1",
    "-C",
    "debuginfo=0",
    "-A",
    "warnings",
    "-o",
    "prog",
)
MASK = {"single_quote_strings": False}  # 'a is a lifetime as often as a char
MACROS = r"""
#[allow(unused_macros)]
macro_rules! assert {
    ($cond:expr $(,)?) => { crate::assay_harness::check($cond, line!(), stringify!($cond)) };
    ($cond:expr, $($arg:tt)+) => { crate::assay_harness::check($cond, line!(), &format!($($arg)+)) };
}
#[allow(unused_macros)]
macro_rules! assert_eq {
    ($left:expr, $right:expr $(,)?) => {
        match (&$left, &$right) { (l, r) => crate::assay_harness::check(*l == *r, line!(),
            &format!("{:?} != {:?} ({} == {})", l, r, stringify!($left), stringify!($right))) }
    };
    ($left:expr, $right:expr, $($arg:tt)+) => {
        match (&$left, &$right) {
            (l, r) => crate::assay_harness::check(*l == *r, line!(), &format!($($arg)+))
        }
    };
}
#[allow(unused_macros)]
macro_rules! assert_ne {
    ($left:expr, $right:expr $(,)?) => {
        match (&$left, &$right) { (l, r) => crate::assay_harness::check(*l != *r, line!(),
            &format!("{:?} == {:?} ({} != {})", l, r, stringify!($left), stringify!($right))) }
    };
    ($left:expr, $right:expr, $($arg:tt)+) => {
        match (&$left, &$right) {
            (l, r) => crate::assay_harness::check(*l != *r, line!(), &format!($($arg)+))
        }
    };
}
"""


class RustRunner(Runner):
    """Rust 1.63."""

    name = "rust"
    aliases = ("rust", "rs")
    limit_address_space = False  # rustc (LLVM) reserves large virtual ranges
    compile_timeout_s = 60.0

    def plan_tests(self, code: str, tests: str, limits: Limits) -> Plan:
        lines = assertion_lines(tests, r"\b(?:assert|assert_eq|assert_ne)!\s*[(\[{]", **MASK)
        program = rename_function(code, r"\bfn\s+main\s*\(", "fn assay_program_main(", **MASK)
        tests_main = rename_function(tests, r"\bfn\s+main\s*\(", "fn assay_tests_main(", **MASK)
        source = "\n".join(
            [
                program,
                harness_source("assay_harness.rs").decode(),
                MACROS,
                'include!("assay_tests.rs");',
                "fn main() { assay_harness::run(assay_tests_main) }",
                "",
            ]
        )
        nonce = new_nonce()
        files = (("main.rs", source.encode()), ("assay_tests.rs", tests_main.encode()))
        return self.compiled_plan(
            files, compile_and_forget((*RUSTC, "main.rs"), "assay_tests.rs"), ("./prog",),
            nonce.encode(), nonce, line_names(tests, lines), lines, limits,
        )  # fmt: skip

    def stdio_program(
        self, code: str
    ) -> tuple[tuple[tuple[str, bytes], ...], tuple[Step, ...], tuple[str, ...]]:
        return (("main.rs", code.encode()),), (self.compile_step((*RUSTC, "main.rs")),), ("./prog",)
