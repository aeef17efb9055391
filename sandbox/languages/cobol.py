"""COBOL (GnuCOBOL 3.1).

Test format: stdio cases only, `{"stdio": [{"name", "stdin", "stdout"}, ...]}`: the program is
compiled once with `cobc -x` and run once per case; its output is compared on the host with
trailing spaces and blank lines ignored. Fixed format by default; free format when the source
says `>>SOURCE FORMAT FREE` or its divisions start before column 8.
"""

from __future__ import annotations

import re

from sandbox.execution import Limits, Step
from sandbox.languages.base import InvalidInput, Plan, Runner

_DIVISION_AT_MARGIN = re.compile(r"^[ ]{0,6}(?:IDENTIFICATION|ID)\s+DIVISION", re.IGNORECASE | re.MULTILINE)


class CobolRunner(Runner):
    """GnuCOBOL."""

    name = "cobol"
    aliases = ("cobol", "cob", "cbl")

    def plan_tests(self, code: str, tests: str, limits: Limits) -> Plan:
        raise InvalidInput('COBOL takes stdio tests only: {"stdio": [{"stdin": ..., "stdout": ...}]}')

    def stdio_program(
        self, code: str
    ) -> tuple[tuple[tuple[str, bytes], ...], tuple[Step, ...], tuple[str, ...]]:
        free = "SOURCE FORMAT" not in code.upper() and _DIVISION_AT_MARGIN.search(code) is not None
        command = ("cobc", "-x", *(("-free",) if free else ()), "-o", "prog", "program.cob")
        return (("program.cob", code.encode()),), (self.compile_step(command),), ("./prog",)
