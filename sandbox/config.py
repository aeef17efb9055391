"""The sandbox's one config: which backend, which image, how many warm containers, what limits."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sandbox.execution import Limits


class LimitsConfig(BaseModel):
    """Default limits of a request (mirrors `sandbox.execution.Limits`; a request may bring its own)."""

    model_config = ConfigDict(extra="forbid")

    wall_timeout_s: float = Field(
        10.0, gt=0, description="Wall-clock seconds per step, enforced from outside."
    )
    cpu_time_s: float | None = Field(None, gt=0, description="CPU seconds per step; None: the wall timeout.")
    memory_mb: int = Field(512, ge=16, description="Address space per step and the sandbox's cgroup memory.")
    max_processes: int = Field(64, ge=4, description="Processes and threads of the sandbox user.")
    output_bytes: int = Field(1_000_000, ge=1024, description="Bytes kept per stream; the rest is dropped.")
    workdir_mb: int = Field(256, ge=1, description="Size of the tmpfs work directory.")
    file_size_mb: int = Field(64, ge=1, description="Largest file a step may write.")
    limit_address_space: bool = Field(True, description="Apply RLIMIT_AS = memory_mb to each step.")

    def to_limits(self) -> Limits:
        """The contract's frozen dataclass."""
        return Limits(**self.model_dump())


def default_pool_size() -> int:
    """Two warm sandboxes per CPU: one runs while the other is being reset."""
    return 2 * (os.cpu_count() or 1)


class SandboxConfig(BaseModel):
    """How code is executed in isolation.

    The Docker backend keeps `pool_size` warm containers, each running the fork server; the
    bubblewrap backend (weaker isolation: no cgroup limits) is the fallback where no Docker engine
    answers.
    """

    model_config = ConfigDict(extra="forbid")

    backend: Literal["auto", "docker", "bwrap"] = Field(
        "auto", description="auto: Docker when an engine answers, else bubblewrap with a loud warning."
    )
    image: str | None = Field(
        None, description="Docker image; None: the tag of the default recipe (`assay sandbox build-image`)."
    )
    pool_size: int = Field(default_factory=default_pool_size, ge=1, description="Warm containers (2 x CPUs).")
    cpus: float = Field(1.0, gt=0, description="CPU quota of each container (docker nano_cpus).")
    tmp_mb: int = Field(64, ge=1, description="Size of each container's /tmp and /dev/shm tmpfs.")
    memory_headroom_mb: int = Field(
        64, ge=16, description="cgroup memory above limits.memory_mb for the fork server itself."
    )
    call_grace_s: float = Field(
        10.0,
        gt=0,
        description="Host-side wait beyond a request's step timeouts before the container is replaced.",
    )
    start_timeout_s: float = Field(30.0, gt=0, description="Seconds a new container has to answer a ping.")
    acquire_timeout_s: float = Field(
        600.0, gt=0, description="Longest wait for an idle container before a request fails."
    )
    limits: LimitsConfig = Field(default_factory=LimitsConfig, description="Default limits of requests.")
    bwrap_rootfs: str = Field(
        "/",
        description="bwrap: the file system tree bound read-only as the jail's root (the host's by default).",
    )

    @model_validator(mode="after")
    def _check(self) -> SandboxConfig:
        if self.image is not None and not self.image.strip():
            raise ValueError("image: must be a Docker image reference or omitted")
        return self

    def resolved_image(self) -> str:
        """The image to run: the configured one or the default recipe's tag."""
        from sandbox.image import ImageRecipe

        return self.image or ImageRecipe().tag
