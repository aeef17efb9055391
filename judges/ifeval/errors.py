"""Errors raised by the IFEval verifiers."""

from __future__ import annotations

from assay.errors import AssayError


class InstructionError(AssayError, ValueError):
    """Base class: an instruction could not be checked (bad id, bad kwargs, bad call)."""


class UnsupportedInstructionError(InstructionError):
    """The instruction id is unknown, or known but deliberately not verified."""

    def __init__(self, instruction_id: str, reason: str) -> None:
        self.instruction_id = instruction_id
        self.reason = reason
        super().__init__(f"instruction {instruction_id!r} is not supported: {reason}")


class InstructionArgumentError(InstructionError):
    """A kwarg the instruction needs is missing, of the wrong type or out of range."""

    def __init__(self, kwarg: str, problem: str, instruction_id: str | None = None) -> None:
        self.kwarg = kwarg
        self.problem = problem
        self.instruction_id = instruction_id
        where = f"instruction {instruction_id!r}: " if instruction_id else ""
        super().__init__(f"{where}kwarg {kwarg!r} {problem}")

    def for_instruction(self, instruction_id: str) -> InstructionArgumentError:
        """Return a copy of this error that names `instruction_id`.

        Checkers only see their kwargs, so the registry adds the id on the way out.

        Args:
            instruction_id: The id the caller asked to check.

        Returns:
            A new error with the same kwarg and problem.
        """
        return InstructionArgumentError(self.kwarg, self.problem, instruction_id)
