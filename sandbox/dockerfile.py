"""Sandbox images from a Dockerfile: to extend the default image, or where a registry is reachable.

The default image is made from Debian packages (`sandbox/image.py`) because no registry is
reachable on the machines assay is built on. A Dockerfile build adds what that cannot: extra
toolchains or libraries on top of the default image (`ARG BASE` then `FROM ${BASE}`; BASE is the
default image's tag, built first when missing), or an image from a registry's base.

Whatever the base, the image must run the sandbox's fork server: `python3` on PATH (checked
after the build). The default image also lists the sandbox uids in /etc/passwd, which tools
that look their user up need (Java's user.home); an image from another base should add them
(see `SANDBOX_UID_BASE` in sandbox/image.py).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sandbox.errors import SandboxError
from sandbox.image import ImageRecipe, build_image

CUSTOM_REPOSITORY = "assay-sandbox-custom"
_NAMES_BASE = re.compile(r"\$\{?BASE\b")
_DECLARES_BASE = re.compile(r"^\s*ARG\s+BASE\b", re.MULTILINE | re.IGNORECASE)


def dockerfile_tag(text: str, base: str) -> str:
    """The default tag of a Dockerfile's image: a hash of its text and of the default base."""
    digest = hashlib.sha256(f"{base}\n{text}".encode()).hexdigest()[:16]
    return f"{CUSTOM_REPOSITORY}:{digest}"


def build_from_dockerfile(
    dockerfile: Path,
    *,
    tag: str | None = None,
    client: Any = None,
    log: Callable[[str], None] = print,
) -> str:
    """Build a sandbox image from a Dockerfile with the docker SDK; return its tag.

    The build context is the Dockerfile's folder. Docker's layer cache makes a rebuild of an
    unchanged Dockerfile quick, so this always builds.

    Args:
        dockerfile: The Dockerfile; `${BASE}` in it names the default image.
        tag: Image reference to tag the result with; default `assay-sandbox-custom:<hash>`.
        client: A docker SDK client; default the local engine.
        log: Build output goes here, a line at a time.

    Raises:
        SandboxError: no Dockerfile, a failed build step (with docker's message), or an image
            without a working python3.
    """
    import docker

    from sandbox.docker_backend import docker_client

    if not dockerfile.is_file():
        raise SandboxError(f"Dockerfile not found: {dockerfile}")
    text = dockerfile.read_text()
    base = ImageRecipe().tag
    build_args = {}
    if _NAMES_BASE.search(text):
        if not _DECLARES_BASE.search(text):
            raise SandboxError(
                f"{dockerfile}: uses ${{BASE}} but does not declare it: add `ARG BASE` before FROM"
            )
        build_image(log=log)
        build_args["BASE"] = base
    tag = tag or dockerfile_tag(text, base)
    client = client or docker_client()
    log(f"docker build {dockerfile} as {tag}")
    try:
        for chunk in client.api.build(
            path=str(dockerfile.parent.resolve()), dockerfile=dockerfile.name, tag=tag,
            buildargs=build_args, rm=True, forcerm=True, decode=True,
        ):  # fmt: skip
            if "error" in chunk:
                raise SandboxError(f"{dockerfile}: docker build failed: {chunk['error'].strip()}")
            if line := chunk.get("stream", "").strip():
                log(line)
    except docker.errors.APIError as err:
        raise SandboxError(f"{dockerfile}: docker build failed: {err.explanation or err}") from err
    _check_python3(client, tag, dockerfile)
    log(f"sandbox image {tag} built from {dockerfile}")
    return tag


def _check_python3(client: Any, tag: str, dockerfile: Path) -> None:
    """Run `python3 -c pass` in the image (no network), removing the container whatever happens."""
    container = None
    try:
        container = client.containers.create(tag, ["python3", "-c", "pass"], network_disabled=True)
        container.start()
        status = container.wait(timeout=60)["StatusCode"]
        problem = f"python3 exited with {status}" if status != 0 else None
    except Exception as err:  # noqa: BLE001 - a docker error or a wait timeout: no usable python3
        problem = str(err)
    finally:
        if container is not None:
            container.remove(force=True)
    if problem:
        raise SandboxError(
            f"{tag} (from {dockerfile}) has no working python3, which runs the sandbox's fork "
            f"server: {problem}"
        )
