"""What the sandbox says about a program: a status, per-test results, the pass rate and the reward.

The reward is the fraction of tests passed (the execution-feedback reward of the Command A code
expert); a completion with no code block at all gets -1.0, so "wrote no code" ranks below "wrote
code that fails every test". Statuses keep apart what went wrong, because they mean different
things to a data engineer: `compile_error` is the program's fault before any test ran, `timeout`
and `memory` are kills from outside, `runtime_error` means the program died before the harness
finished (a crash, or an early exit), `failed` means every test ran and some failed.
`invalid_input` (a bad row: unknown language, empty code, no tests) and `sandbox_error` (the
infrastructure failed; retry-worthy) carry no reward at all.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import pyarrow as pa

Status = Literal[
    "passed",
    "failed",
    "compile_error",
    "timeout",
    "memory",
    "runtime_error",
    "no_code",
    "invalid_input",
    "sandbox_error",
]
STATUSES: tuple[str, ...] = Status.__args__  # type: ignore[attr-defined]
NO_CODE_REWARD = -1.0
MESSAGE_CHARS = 2000  # longest message kept per verdict or test, so rows stay small


def clip(text: str, limit: int = MESSAGE_CHARS) -> str:
    """Shorten `text` to `limit` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit} more characters]"


@dataclass(frozen=True)
class TestResult:
    """One test: its name, whether it passed, and why not (or an empty message)."""

    __test__ = False  # not a pytest test class

    name: str
    passed: bool
    message: str = ""


@dataclass(frozen=True)
class Verdict:
    """The outcome of running a program against its tests.

    Attributes:
        status: One of `STATUSES` (see the module docstring).
        tests: Per-test results, in the order the tests were written.
        message: What went wrong overall: compiler output, the crash, the bad input.
        language: The runner's language name ("" when the language was unknown).
        backend: The sandbox backend that ran it ("docker", "bwrap"), "" when nothing ran.
        wall_s: Seconds the steps took inside the sandbox.
        trust: Where the expected values were compared with the program's: "isolated" (on the
            host, or in a judge process the program can neither read nor change: Python's unit
            tests, stdio cases, SQL), "in_process" (assertions compiled or loaded into the
            program's own process: C++, Java, Go, Rust, JavaScript and TypeScript unit tests; a
            deliberate attack from inside that process can forge such a verdict, see
            docs/sandbox.md), "" when nothing ran.
    """

    status: Status
    tests: tuple[TestResult, ...] = ()
    message: str = ""
    language: str = ""
    backend: str = ""
    wall_s: float = 0.0
    trust: str = ""

    @property
    def passed(self) -> int:
        """Number of tests passed."""
        return sum(test.passed for test in self.tests)

    @property
    def total(self) -> int:
        """Number of tests."""
        return len(self.tests)

    @property
    def pass_rate(self) -> float:
        """Fraction of tests passed; 0.0 when there are none."""
        return self.passed / self.total if self.tests else 0.0

    @property
    def reward(self) -> float | None:
        """Pass fraction; -1.0 without a code block; None when the row or the sandbox was at fault."""
        if self.status == "no_code":
            return NO_CODE_REWARD
        if self.status in ("invalid_input", "sandbox_error"):
            return None
        return self.pass_rate

    def to_row(self) -> dict[str, Any]:
        """The verdict as plain values matching `VERDICT_TYPE`."""
        return {
            "status": self.status,
            "passed": self.passed,
            "total": self.total,
            "message": self.message,
            "language": self.language,
            "backend": self.backend,
            "wall_s": self.wall_s,
            "trust": self.trust,
            "tests": [asdict(test) for test in self.tests],
        }


def invalid_input(message: str, language: str = "") -> Verdict:
    """A verdict for a row that cannot be run as given."""
    return Verdict("invalid_input", message=message, language=language)


VERDICT_TYPE = pa.struct(
    [
        ("status", pa.string()),
        ("passed", pa.int64()),
        ("total", pa.int64()),
        ("message", pa.string()),
        ("language", pa.string()),
        ("backend", pa.string()),
        ("wall_s", pa.float64()),
        ("trust", pa.string()),
        (
            "tests",
            pa.list_(pa.struct([("name", pa.string()), ("passed", pa.bool_()), ("message", pa.string())])),
        ),
    ]
)
