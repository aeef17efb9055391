"""Programmatic verifiers for IFEval-style instructions.

Implements the verifiable instructions of IFEval (J. Zhou et al., "Instruction-Following
Evaluation for Large Language Models", 2023, arXiv:2311.07911) in strict mode, with IFEval's
instruction ids and kwarg names, plus the language-specific instructions of M-IFEval (A. Dussolle
et al., "M-IFEval: Multilingual Instruction-Following Evaluation", 2025, arXiv:2502.04688), so
rows of either dataset can be checked as they are:

    >>> verify_response("hello world", ["en:punctuation:no_comma"], [{}])
    [True]

`SUPPORTED` maps canonical ids to checkers, `UNSUPPORTED` lists the known ids that are not
verified and why, and `canonical_id` explains how raw ids map onto them.
"""

from judges.ifeval.errors import (
    InstructionArgumentError,
    InstructionError,
    UnsupportedInstructionError,
)
from judges.ifeval.registry import (
    SUPPORTED,
    UNSUPPORTED,
    Checker,
    canonical_id,
    check_instruction,
    verify_response,
)

__all__ = [
    "SUPPORTED",
    "UNSUPPORTED",
    "Checker",
    "InstructionArgumentError",
    "InstructionError",
    "UnsupportedInstructionError",
    "canonical_id",
    "check_instruction",
    "verify_response",
]
