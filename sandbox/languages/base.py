"""What every language runner shares: the plan it builds, the records its harness writes, and how
the host turns a sandbox result into a verdict.

A runner turns (code, tests) into a `Plan`: an `ExecRequest` for the sandbox plus what the host
must know to judge it (the test names, decided on the host before anything runs, and a fresh
random nonce). The harness in the sandbox writes one line per result, `@@assay:<nonce> <json>`,
and a final `done` record; the host believes only lines with the nonce, counts a test passed only
when its record says so, and fails every test when the done record is missing.

Two test formats exist for every language:
- the language's own unit-test snippet (see each runner), run by a harness in the program;
- stdio cases, `{"stdio": [{"name": ..., "stdin": ..., "stdout": ...}, ...]}` as JSON: the
  program runs once per case under `stdio_driver.py`, and the host compares its output with the
  expected one (which never enters the sandbox). COBOL uses only this format.
"""

from __future__ import annotations

import json
import secrets
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any

from sandbox.execution import ExecRequest, ExecResult, Limits, Step, StepResult
from sandbox.verdict import TestResult, Verdict, clip

MARK = b"@@assay:"
STDIO_DRIVER = "stdio_driver.py"


class InvalidInput(ValueError):
    """The row cannot be run as given (bad tests, empty code); becomes an invalid_input verdict."""


class ProgramRejected(InvalidInput):
    """The program cannot be built with its tests, by its own fault (e.g. its class is named like
    the tests'); becomes a compile_error verdict."""


def harness_source(name: str) -> bytes:
    """A file of `sandbox/harness/`, as shipped into the sandbox."""
    return resources.files("sandbox.harness").joinpath(name).read_bytes()


def new_nonce() -> str:
    """A fresh secret for one execution: 128 random bits."""
    return secrets.token_hex(16)


@dataclass(frozen=True)
class StdioCase:
    """One stdio test: the program's input and the output it must print."""

    name: str
    stdin: str
    stdout: str


@dataclass(frozen=True)
class Plan:
    """An execution request and what the host needs to judge its result.

    Attributes:
        request: What the sandbox runs.
        test_names: The tests, in order; the denominator of the pass rate.
        nonce: The secret that the harness's records must carry.
        compile_steps: Names of the steps whose failure is a compile error.
        stdio_cases: For the stdio format, the cases (their expected output stays on the host).
        trust: Where the expected values are compared: "isolated" when out of the program's
            reach (on the host, or in a judge process the program cannot read or change), or
            "in_process" when the checks run inside the program's own process (see
            `Verdict.trust`).
    """

    request: ExecRequest
    test_names: tuple[str, ...]
    nonce: str
    compile_steps: tuple[str, ...] = ()
    stdio_cases: tuple[StdioCase, ...] = ()
    trust: str = "in_process"
    notes: dict[str, Any] = field(default_factory=dict)


def parse_stdio_tests(tests: str) -> tuple[StdioCase, ...] | None:
    """The cases of a stdio test spec, None when `tests` is not one.

    Raises:
        InvalidInput: the JSON has a "stdio" key but the cases are malformed.
    """
    text = tests.lstrip()
    if not text.startswith("{") or '"stdio"' not in text:
        return None
    try:
        spec = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(spec, dict) or "stdio" not in spec:
        return None
    cases = spec["stdio"]
    if not isinstance(cases, list) or not cases:
        raise InvalidInput("tests.stdio: expected a non-empty list of {name, stdin, stdout} cases")
    parsed = []
    for i, case in enumerate(cases):
        if not isinstance(case, dict) or not isinstance(case.get("stdout"), str):
            raise InvalidInput(f"tests.stdio[{i}]: expected an object with a string `stdout`")
        stdin = case.get("stdin", "")
        if not isinstance(stdin, str):
            raise InvalidInput(f"tests.stdio[{i}].stdin: expected a string")
        parsed.append(StdioCase(str(case.get("name") or f"case {i + 1}"), stdin, case["stdout"]))
    return tuple(parsed)


def normalize_output(text: str) -> str:
    """Output as compared: line endings unified, trailing spaces and blank lines ignored."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return "\n".join(lines).rstrip("\n")


class Runner(ABC):
    """A language: how to build a program with its tests into a sandbox request.

    Subclasses set `name`, `aliases` (code-fence tags, lowercase) and implement `plan_tests`
    (the language's unit-test format) and, unless they are interpreted, `compile_steps` for the
    stdio format.
    """

    name: str = ""
    aliases: tuple[str, ...] = ()
    compile_timeout_s: float = 30.0  # compilers are slower than the programs they build
    run_timeout_s: float | None = None  # None: the limits' wall timeout
    limit_address_space: bool = True  # off for runtimes that reserve big virtual ranges (JVM, V8, Go)
    min_memory_mb: int = 0  # the runtime needs at least this much

    def limits(self, limits: Limits) -> Limits:
        """The request's limits, adjusted to what this language's toolchain needs."""
        return replace(
            limits,
            memory_mb=max(limits.memory_mb, self.min_memory_mb),
            limit_address_space=limits.limit_address_space and self.limit_address_space,
        )

    def plan(self, code: str, tests: str, limits: Limits) -> Plan:
        """Build the request for `code` against `tests`.

        Raises:
            InvalidInput: the tests (or code) cannot be run as given.
        """
        if not code.strip():
            raise InvalidInput("the program is empty")
        if not isinstance(tests, str) or not tests.strip():
            raise InvalidInput("no tests given")
        limits = self.limits(limits)
        cases = parse_stdio_tests(tests)
        if cases is not None:
            return self.plan_stdio(code, cases, limits)
        return self.plan_tests(code, tests, limits)

    @abstractmethod
    def plan_tests(self, code: str, tests: str, limits: Limits) -> Plan:
        """Build the request for the language's own unit-test format."""

    def stdio_program(
        self, code: str
    ) -> tuple[tuple[tuple[str, bytes], ...], tuple[Step, ...], tuple[str, ...]]:
        """Files, compile steps and the run command of a stand-alone program (stdio format)."""
        raise InvalidInput(f"{self.name}: stdio tests are not supported")

    def plan_stdio(self, code: str, cases: tuple[StdioCase, ...], limits: Limits) -> Plan:
        """Run the program once per case under the stdio driver; outputs are judged on the host."""
        files, compile_steps, argv = self.stdio_program(code)
        nonce = new_nonce()
        case_timeout = self.run_timeout_s or limits.wall_timeout_s
        payload = {
            "nonce": nonce,
            "argv": list(argv),
            "stdins": [case.stdin for case in cases],
            "timeout_s": case_timeout,
            "output_bytes": limits.output_bytes // 2,
        }
        run = Step(
            "run",
            ("python3", "-I", "-B", STDIO_DRIVER),
            stdin=json.dumps(payload).encode(),
            timeout_s=case_timeout * len(cases) + 5.0,
        )
        request = ExecRequest(
            files=((STDIO_DRIVER, harness_source(STDIO_DRIVER)), *files),
            steps=(*compile_steps, run),
            limits=limits,
        )
        names = tuple(c.name for c in cases)
        return Plan(request, names, nonce, tuple(s.name for s in compile_steps), cases, trust="isolated")

    def judge(self, plan: Plan, result: ExecResult) -> Verdict | None:
        """A runner's own verdict for a result that compiled, or None for the generic judgement."""
        return None

    def compile_step(self, argv: tuple[str, ...], name: str = "compile", env: tuple = ()) -> Step:
        """A compile step with the runner's compile timeout."""
        return Step(name, argv, env=env, timeout_s=self.compile_timeout_s)

    def run_step(self, argv: tuple[str, ...], stdin: bytes, env: tuple = ()) -> Step:
        """The run step of the unit-test format."""
        return Step("run", argv, stdin=stdin, env=env, timeout_s=self.run_timeout_s)

    def compiled_plan(
        self,
        files: tuple[tuple[str, bytes], ...],
        compile_argv: tuple[str, ...],
        run_argv: tuple[str, ...],
        run_stdin: bytes,
        nonce: str,
        names: tuple[str, ...],
        lines: list[int],
        limits: Limits,
        compile_env: tuple = (),
    ) -> Plan:
        """The plan of a compiled unit-test format: a `compile` step (its failures are compile
        errors), then the run step; the tests are the assertion `lines`, named `names`."""
        steps = (self.compile_step(compile_argv, env=compile_env), self.run_step(run_argv, run_stdin))
        request = ExecRequest(files=files, steps=steps, limits=limits)
        return Plan(request, names, nonce, ("compile",), notes={"lines": lines})


# ---------------------------------------------------------------- judging


def records(stdout: bytes, nonce: str) -> list[dict[str, Any]]:
    """The harness's records in `stdout`: lines that start with the nonce's mark."""
    mark = MARK + nonce.encode() + b" "
    found = []
    for line in stdout.split(b"\n"):
        if line.startswith(mark):
            try:
                record = json.loads(line[len(mark) :])
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(record, dict):
                found.append(record)
    return found


def _text(data: bytes, limit: int = 1500) -> str:
    return clip(data.decode("utf-8", errors="replace").strip(), limit)


def _killed(step: StepResult) -> str | None:
    """The verdict status for a step the sandbox killed, if it was."""
    if step.timed_out:
        return "timeout"
    if step.memory_exceeded:
        return "memory"
    return None


def _why(step: StepResult) -> str:
    if step.timed_out:
        return f"{step.name} timed out after {step.wall_s:.1f} s"
    if step.memory_exceeded:
        return f"{step.name} ran out of memory"
    if step.signal is not None:
        return f"{step.name} was killed by signal {step.signal}"
    return f"{step.name} exited with code {step.exit_code}"


def judge(runner: Runner, plan: Plan, result: ExecResult) -> Verdict:
    """Turn the sandbox's result for `plan` into a verdict (carrying the plan's `trust`)."""
    return replace(_judge(runner, plan, result), trust=plan.trust)


def _judge(runner: Runner, plan: Plan, result: ExecResult) -> Verdict:
    base = {"language": runner.name, "backend": result.backend, "wall_s": sum(s.wall_s for s in result.steps)}
    if result.error is not None:
        return Verdict("sandbox_error", message=result.error, **base)
    for step in result.steps:
        if step.name in plan.compile_steps and step.exit_code != 0:
            detail = _text(step.stderr + b"\n" + step.stdout)
            status = _killed(step) or "compile_error"
            return Verdict(
                status, _all_failed(plan, "not compiled"), f"{_why(step)}\n{detail}".strip(), **base
            )
    own = runner.judge(plan, result)
    if own is not None:
        return own
    run = next((s for s in result.steps if s.name == "run"), None)
    if run is None:
        return Verdict("sandbox_error", message="the run step did not start", **base)
    if plan.stdio_cases:
        return _judge_stdio(plan, run, base)
    return _judge_records(plan, run, base)


def _all_failed(plan: Plan, message: str) -> tuple[TestResult, ...]:
    return tuple(TestResult(name, False, message) for name in plan.test_names)


def _judge_records(plan: Plan, run: StepResult, base: dict[str, Any]) -> Verdict:
    found = records(run.stdout, plan.nonce)
    passed: dict[int, bool] = {}
    messages: dict[int, str] = {}
    done = fatal = compile_error = None
    crashed = False  # the program failed while loading, before any test
    line_index = {line: i for i, line in enumerate(plan.notes.get("lines", ()))}
    for record in found:
        kind = record.get("t")
        if kind == "test" and "line" in record:  # C-like harnesses report the assertion's line
            record["i"] = line_index.get(record["line"], -1)
        if kind == "test" and isinstance(record.get("i"), int) and 0 <= record["i"] < len(plan.test_names):
            index = record["i"]
            if passed.get(index) is not False:  # a failure is final
                passed[index] = record.get("ok") is True
                messages[index] = str(record.get("msg") or "")
        elif kind == "done":
            done = record if done is None else {"n": -1}  # two done records: tampering
        elif kind == "fatal":
            fatal = str(record.get("msg") or "")
            crashed = crashed or record.get("phase") == "load"
        elif kind == "compile_error":
            compile_error = str(record.get("msg") or "")
    stderr = _text(run.stderr)
    if compile_error is not None:
        return Verdict("compile_error", _all_failed(plan, "not compiled"), compile_error, **base)
    finished = (
        done is not None
        and done.get("n", len(plan.test_names)) == len(plan.test_names)
        and run.exit_code == 0
    )
    missing = fatal or ("not run: " + _why(run) if not finished else "no result reported")
    tests = tuple(
        TestResult(name, passed.get(i, False), messages.get(i, "") if i in passed else missing)
        for i, name in enumerate(plan.test_names)
    )
    status = _killed(run)
    if status is None and (not finished or crashed):
        status = "runtime_error"
    if status is None:
        status = "passed" if tests and all(t.passed for t in tests) else "failed"
    if status in ("failed", "runtime_error") and _out_of_memory([fatal or "", stderr, *messages.values()]):
        status = "memory"  # the allocation failed inside the limit (RLIMIT_AS) rather than being killed
    message = fatal or ""
    if status == "timeout" or (status in ("runtime_error", "memory") and not crashed and not finished):
        message = f"{_why(run)}" + (" before the tests finished" if not finished else "")
        message += f"\n{stderr}" if stderr else ""
    return Verdict(status, tests, message.strip(), **base)


MEMORY_ERRORS = ("MemoryError", "std::bad_alloc", "java.lang.OutOfMemoryError", "memory allocation of ")


def _out_of_memory(texts: list[str]) -> bool:
    """Whether the program failed because an allocation failed (Python, C++, Java, Rust)."""
    return any(marker in text for text in texts for marker in MEMORY_ERRORS)


def _judge_stdio(plan: Plan, run: StepResult, base: dict[str, Any]) -> Verdict:
    outputs = {
        r["i"]: r
        for r in records(run.stdout, plan.nonce)
        if r.get("t") == "out" and isinstance(r.get("i"), int)
    }
    results = []
    statuses = set()
    for i, case in enumerate(plan.stdio_cases):
        out = outputs.get(i)
        if out is None:
            results.append(TestResult(case.name, False, f"not run: {_why(run)}"))
            statuses.add(_killed(run) or "runtime_error")
            continue
        if out.get("timeout"):
            results.append(TestResult(case.name, False, "timed out"))
            statuses.add("timeout")
            continue
        if out.get("exit") != 0:
            stderr = clip(str(out.get("stderr") or ""), 500)
            results.append(
                TestResult(
                    case.name,
                    False,
                    f"exit code {out.get('exit')}, signal {out.get('signal')}\n{stderr}".strip(),
                )
            )
            statuses.add("runtime_error")
            continue
        got = normalize_output(str(out.get("stdout", "")))
        want = normalize_output(case.stdout)
        ok = got == want
        results.append(
            TestResult(case.name, ok, "" if ok else f"expected {clip(want, 300)!r}, got {clip(got, 300)!r}")
        )
    tests = tuple(results)
    if all(t.passed for t in tests):
        status = "passed"
    else:
        status = next((s for s in ("timeout", "memory", "runtime_error") if s in statuses), "failed")
    return Verdict(status, tests, "" if status in ("passed", "failed") else _text(run.stderr, 500), **base)
