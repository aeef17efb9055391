"""Checks on a request before any backend sees it: a bad request is the caller's error."""

from sandbox.errors import SandboxError
from sandbox.execution import ExecRequest
from sandbox.server import safe_relative_path


class InvalidRequest(SandboxError, ValueError):
    """The request itself is wrong (a file name escaping the work directory, an empty argv...)."""


def validate_request(request: ExecRequest) -> None:
    """Raise InvalidRequest naming the offending file, step or limit.

    Args:
        request: What a caller asks a sandbox to run.
    """
    if not request.steps:
        raise InvalidRequest("request has no steps")
    seen: set[str] = set()
    for name, content in request.files:
        if not isinstance(name, str) or not safe_relative_path(name):
            raise InvalidRequest(
                f"file name {name!r} must be a relative path without '..', '.' or empty parts"
            )
        if not isinstance(content, bytes | bytearray):
            raise InvalidRequest(f"file {name!r}: content must be bytes, got {type(content).__name__}")
        if name in seen:
            raise InvalidRequest(f"file {name!r} appears twice")
        seen.add(name)
    for name in seen:  # "a" and "a/b" cannot both exist
        parts = name.split("/")
        for depth in range(1, len(parts)):
            if "/".join(parts[:depth]) in seen:
                raise InvalidRequest(f"file {name!r} would be inside file {'/'.join(parts[:depth])!r}")
    total = sum(len(content) for _, content in request.files)
    if total > request.limits.workdir_mb << 20:
        raise InvalidRequest(
            f"files take {total} bytes, more than the work directory's {request.limits.workdir_mb} MB"
        )
    for step in request.steps:
        if not step.argv or not all(isinstance(a, str) and a and "\x00" not in a for a in step.argv):
            raise InvalidRequest(
                f"step {step.name!r}: argv must be non-empty strings without NUL: {step.argv!r}"
            )
        if step.judge and not all(isinstance(a, str) and a and "\x00" not in a for a in step.judge):
            raise InvalidRequest(f"step {step.name!r}: judge argv must be non-empty strings without NUL")
        if not isinstance(step.stdin, bytes | bytearray):
            raise InvalidRequest(f"step {step.name!r}: stdin must be bytes")
        if step.timeout_s is not None and step.timeout_s <= 0:
            raise InvalidRequest(f"step {step.name!r}: timeout_s must be positive")
        for key, value in step.env:
            if not key or "=" in key or "\x00" in key + value:
                raise InvalidRequest(f"step {step.name!r}: bad environment variable {key!r}")
    limits = request.limits
    for field in (
        "wall_timeout_s",
        "memory_mb",
        "max_processes",
        "output_bytes",
        "workdir_mb",
        "file_size_mb",
    ):
        if getattr(limits, field) <= 0:
            raise InvalidRequest(f"limits.{field} must be positive, got {getattr(limits, field)}")
    if limits.cpu_time_s is not None and limits.cpu_time_s <= 0:
        raise InvalidRequest(f"limits.cpu_time_s must be positive, got {limits.cpu_time_s}")


def step_timeouts(request: ExecRequest) -> list[float]:
    """The wall-clock timeout of each step."""
    return [step.timeout_s or request.limits.wall_timeout_s for step in request.steps]
