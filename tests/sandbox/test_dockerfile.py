"""Sandbox images from a Dockerfile: one that extends the default image builds with the docker SDK
and the sandbox runs programs in it; a failing build step and an image without python3 are clear
errors naming the Dockerfile."""

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.config import SandboxConfig
from sandbox.docker_backend import DockerSandbox, docker_client
from sandbox.dockerfile import build_from_dockerfile, dockerfile_tag
from sandbox.errors import SandboxError
from sandbox.execution import ExecRequest, Limits, Step


def test_the_default_tag_follows_the_dockerfile_and_the_base() -> None:
    tag = dockerfile_tag("ARG BASE\nFROM ${BASE}\n", "assay-sandbox:1")
    assert tag.startswith("assay-sandbox-custom:") and len(tag.split(":")[1]) == 16
    assert dockerfile_tag("ARG BASE\nFROM ${BASE}\n", "assay-sandbox:2") != tag
    assert dockerfile_tag("ARG BASE\nFROM ${BASE}\nRUN true\n", "assay-sandbox:1") != tag


@pytest.fixture
def test_tag(docker_sandbox) -> Iterator[str]:  # noqa: ANN001 - needs an engine and the default image
    """A unique image tag, removed (with its image) after the test."""
    tag = f"assay-sandbox-test:{uuid.uuid4().hex[:12]}"
    yield tag
    client = docker_client()
    if client.images.list(name=tag):
        client.images.remove(tag, force=True)


@pytest.mark.docker
def test_a_dockerfile_extending_the_default_image_runs_programs(tmp_path: Path, test_tag: str) -> None:
    (tmp_path / "motd.txt").write_text("extended image\n")
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("ARG BASE\nFROM ${BASE}\nCOPY motd.txt /opt/extra/motd.txt\n")
    lines: list[str] = []
    assert build_from_dockerfile(dockerfile, tag=test_tag, log=lines.append) == test_tag
    assert any("COPY motd.txt" in line for line in lines)  # docker's build output was streamed

    sandbox = DockerSandbox(SandboxConfig(backend="docker", pool_size=1, image=test_tag), docker_client())
    try:
        code = "print(open('/opt/extra/motd.txt').read(), end='')"
        request = ExecRequest(
            files=(("main.py", code.encode()),),
            steps=(Step("run", ("python3", "main.py")),),
            limits=Limits(wall_timeout_s=5),
        )
        result = sandbox.execute(request)
    finally:
        sandbox.close()
    assert result.error is None, result.error
    (step,) = result.steps
    assert (step.exit_code, step.stdout) == (0, b"extended image\n")


@pytest.mark.docker
def test_a_failing_build_step_is_a_clear_error(tmp_path: Path, test_tag: str) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("ARG BASE\nFROM ${BASE}\nCOPY missing.txt /opt/\n")
    with pytest.raises(SandboxError, match=r"Dockerfile: docker build failed: .*missing\.txt"):
        build_from_dockerfile(dockerfile, tag=test_tag, log=lambda _: None)


@pytest.mark.docker
def test_an_image_without_python3_is_refused(tmp_path: Path, test_tag: str) -> None:
    # `scratch` has nothing in it, so the fork server could not start.
    (tmp_path / "empty.txt").write_text("")
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM scratch\nCOPY empty.txt /empty.txt\n")
    with pytest.raises(SandboxError, match="has no working python3"):
        build_from_dockerfile(dockerfile, tag=test_tag, log=lambda _: None)
    # The check's container is removed even though it could not start.
    assert docker_client().containers.list(all=True, filters={"ancestor": test_tag}) == []


def test_a_missing_dockerfile_or_an_undeclared_base_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="Dockerfile not found"):
        build_from_dockerfile(tmp_path / "Dockerfile", log=lambda _: None)
    (tmp_path / "Dockerfile").write_text("FROM ${BASE}\n")
    with pytest.raises(SandboxError, match="add `ARG BASE` before FROM"):
        build_from_dockerfile(tmp_path / "Dockerfile", log=lambda _: None)
