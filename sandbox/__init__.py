"""Isolated code execution: a Docker backend with a warm pool of fork servers, bubblewrap as the
fallback. `open_sandbox(config)` picks the backend; both speak the contract of `sandbox.execution`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sandbox.errors import SandboxError
from sandbox.execution import ExecRequest, ExecResult, Limits, Sandbox, Step, StepResult

if TYPE_CHECKING:
    from sandbox.config import SandboxConfig

__all__ = [
    "ExecRequest",
    "ExecResult",
    "Limits",
    "Sandbox",
    "SandboxError",
    "Step",
    "StepResult",
    "open_sandbox",
]

log = logging.getLogger(__name__)


def open_sandbox(config: SandboxConfig | None = None) -> Sandbox:
    """Open the configured sandbox: Docker when an engine answers, else bubblewrap, loudly.

    Args:
        config: Backend (auto, docker, bwrap), image, pool size and default limits.

    Raises:
        SandboxError: the chosen backend cannot start (no engine, no image, no bwrap).
    """
    from sandbox.config import SandboxConfig

    config = config or SandboxConfig()
    if config.backend in ("auto", "docker"):
        from sandbox.docker_backend import DockerSandbox, docker_client

        try:
            client = docker_client()
        except SandboxError:
            if config.backend == "docker":
                raise
            client = None
        if client is not None:
            return DockerSandbox(config, client)
    from sandbox.bwrap_backend import BwrapSandbox

    sandbox = BwrapSandbox(config)
    if config.backend == "auto":
        message = (
            "WEAKER ISOLATION: no Docker engine answers, so code runs under bubblewrap "
            "(namespaces and rlimits, no cgroup memory/CPU/pids limits)"
        )
        log.warning(message)
        import sys

        print(f"assay sandbox: {message}", file=sys.stderr)
    return sandbox
