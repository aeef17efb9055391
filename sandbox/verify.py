"""The top level: run a program (or a model's completion) against its tests and say how it did.

    verdict = verify(sandbox, "python", completion, tests)
    verdict.status, verdict.pass_rate, verdict.reward, verdict.tests

Bad input never raises: an unknown language, empty or non-UTF-8 code, missing tests give an
`invalid_input` verdict naming the problem; a completion without a code block gives `no_code`
(reward -1.0); a failure of the sandbox itself gives `sandbox_error`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sandbox.execution import Limits, Sandbox
from sandbox.extract import extract_code
from sandbox.languages import get_runner
from sandbox.languages.base import InvalidInput, ProgramRejected, judge
from sandbox.verdict import Verdict, clip, invalid_input


@dataclass(frozen=True)
class Job:
    """One program to verify (the arguments of `verify`)."""

    language: Any
    program: Any
    tests: Any
    extract: bool = True


def _as_text(value: Any, field: str) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as err:
            raise InvalidInput(f"{field} is not UTF-8: {err.reason} at byte {err.start}") from err
    if isinstance(value, str):
        return value
    raise InvalidInput(f"{field}: expected text, got {type(value).__name__}")


def verify(
    sandbox: Sandbox,
    language: str,
    completion_or_code: str | bytes | None,
    tests: str | dict | list | None,
    *,
    extract: bool = True,
    limits: Limits | None = None,
) -> Verdict:
    """Run a program against its tests in the sandbox.

    Args:
        sandbox: Where to run it (`sandbox.open_sandbox(config)`).
        language: A runner name or alias ("python", "cpp", "c++", "ts", ...).
        completion_or_code: A model's completion (its fenced code block is the program), or the
            program itself with `extract=False`.
        tests: The language's test format (see `sandbox.languages`); JSON text, or a dict/list
            that is serialized to JSON, for SQL and stdio cases.
        extract: Take the program from a fenced block of the completion.
        limits: Resource limits; default `Limits()`.

    Returns:
        The verdict; never raises for bad input or a failed sandbox.
    """
    try:
        runner = get_runner(language)
    except KeyError as err:
        return invalid_input(str(err.args[0]), str(language or ""))
    try:
        text = _as_text(completion_or_code, "the program") if completion_or_code is not None else ""
        if tests is None:
            raise InvalidInput("no tests given (the tests field is missing)")
        tests_text = tests if isinstance(tests, str | bytes) else json.dumps(tests)
        tests_text = _as_text(tests_text, "the tests")
        if extract:
            code = extract_code(text, runner.aliases)
            if code is None:
                return Verdict(
                    "no_code", message=f"no {runner.name} code block in the completion", language=runner.name
                )
        else:
            code = text
        if "\x00" in code:
            raise InvalidInput("the program contains NUL bytes")
        plan = runner.plan(code, tests_text, limits or Limits())
    except ProgramRejected as err:
        return Verdict("compile_error", message=str(err), language=runner.name)
    except InvalidInput as err:
        return invalid_input(str(err), runner.name)
    try:
        result = sandbox.execute(plan.request)
    except Exception as err:  # noqa: BLE001 - the infrastructure failed, not the program
        return Verdict("sandbox_error", message=clip(f"{type(err).__name__}: {err}"), language=runner.name)
    return judge(runner, plan, result)


def verify_many(
    sandbox: Sandbox, jobs: Sequence[Job] | Iterable[Job], *, workers: int = 4, limits: Limits | None = None
) -> list[Verdict]:
    """Verify many programs concurrently through one sandbox (its warm pool does the isolation).

    Args:
        sandbox: The sandbox; thread-safe.
        jobs: What to verify.
        workers: Executions in flight at once.
        limits: Resource limits for every job.
    """
    jobs = list(jobs)
    if not jobs:
        return []

    def one(job: Job) -> Verdict:
        return verify(sandbox, job.language, job.program, job.tests, extract=job.extract, limits=limits)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(one, jobs))
