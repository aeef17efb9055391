"""What a sandbox backend is asked to run and what it answers: the contract between the
isolation layer (Docker or bubblewrap, warm pool, fork server) and the language runners.

A request is a set of files written into a fresh, empty work directory and a list of steps
(for example compile, then run) executed in order; the first step that fails stops the rest.
Every step runs under the request's limits in its own process group, which the backend kills
from outside when the wall-clock timeout passes.
"""

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Limits:
    """Resource limits applied to every step of a request."""

    wall_timeout_s: float = 10.0  # per step, enforced from outside the process
    cpu_time_s: float | None = None  # RLIMIT_CPU; None = the wall timeout, rounded up
    memory_mb: int = 512  # address space / cgroup memory of the step
    max_processes: int = 64  # processes and threads of the sandbox user
    output_bytes: int = 1_000_000  # per stream; the rest is dropped while it streams
    workdir_mb: int = 256  # size of the tmpfs work directory
    file_size_mb: int = 64  # largest file a step may write (RLIMIT_FSIZE)
    # RLIMIT_AS = memory_mb per step. Turn off for runtimes that reserve large virtual ranges
    # up front (JVM, V8, Go); the sandbox's cgroup memory limit of memory_mb still holds then.
    limit_address_space: bool = True


@dataclass(frozen=True)
class Step:
    """One command, run in the work directory as the unprivileged sandbox user."""

    name: str  # e.g. "compile" or "run"; reported back in StepResult
    argv: tuple[str, ...]
    stdin: bytes = b""  # fed to the process, then closed (tests can travel here, never on disk)
    env: tuple[tuple[str, str], ...] = ()  # added to a minimal PATH/HOME/LANG environment
    timeout_s: float | None = None  # overrides Limits.wall_timeout_s for this step
    # A trusted peer that runs beside `argv` (the untrusted program) in the same step, under
    # another uid where the sandbox can switch uids, never in the work directory: it gets the
    # step's stdin and writes the step's stdout; `argv` gets no stdin and its output goes to the
    # step's stderr; the two talk over descriptor 3 (a socket pair). The step ends when the peer
    # exits, and its exit status is the step's. Empty: `argv` alone gets stdin and stdout.
    judge: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExecRequest:
    """Files to write (relative paths, no `..`), then steps to run in order."""

    files: tuple[tuple[str, bytes], ...]
    steps: tuple[Step, ...]
    limits: Limits = field(default_factory=Limits)


@dataclass(frozen=True)
class StepResult:
    """How one step ended. Exactly one of exit_code / signal is set unless the step never started."""

    name: str
    exit_code: int | None
    signal: int | None
    stdout: bytes
    stderr: bytes
    timed_out: bool = False
    memory_exceeded: bool = False
    output_truncated: bool = False
    wall_s: float = 0.0


@dataclass(frozen=True)
class ExecResult:
    """The steps that ran (a failed step is the last one), or an infrastructure error."""

    steps: tuple[StepResult, ...]
    backend: str  # "docker" or "bwrap"
    error: str | None = None  # the sandbox itself failed (not the program); retry-worthy

    @property
    def ok(self) -> bool:
        """True when every step ran and exited 0."""
        return self.error is None and all(s.exit_code == 0 for s in self.steps)


class Sandbox(Protocol):
    """An isolated executor with a warm pool. Thread-safe: `execute` may be called concurrently."""

    backend: str

    def execute(self, request: ExecRequest) -> ExecResult:
        """Run the request in a clean, isolated environment and report every step."""

    def close(self) -> None:
        """Stop and remove everything this sandbox started."""
