"""Setting the sandbox up: the image recipe and build checks, backend choice, config, the CLI."""

import logging
import subprocess
import sys
from pathlib import Path

import pytest
import resources
from pydantic import ValidationError

from sandbox.config import SandboxConfig
from sandbox.errors import SandboxError
from sandbox.execution import ExecRequest, Step
from sandbox.image import DEFAULT_PACKAGES, ImageRecipe, build_image

ROOT = Path(__file__).resolve().parents[2]


def test_recipe_hash_follows_content_not_package_order() -> None:
    recipe = ImageRecipe()
    assert recipe.tag.startswith("assay-sandbox:") and len(recipe.digest()) == 16
    assert ImageRecipe(packages=tuple(reversed(DEFAULT_PACKAGES))).digest() == recipe.digest()
    assert ImageRecipe(packages=(*DEFAULT_PACKAGES, "ghc")).digest() != recipe.digest()
    assert ImageRecipe(suite="trixie").digest() != recipe.digest()
    assert ImageRecipe(revision=2).digest() != recipe.digest()


def test_build_without_debootstrap_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sandbox.image as image

    monkeypatch.setattr(image, "image_exists", lambda tag: False)
    monkeypatch.setattr(image, "find_debootstrap", lambda: None)
    with pytest.raises(SandboxError, match="debootstrap is not installed"):
        build_image(ImageRecipe(revision=999))


def test_existing_image_is_not_rebuilt(monkeypatch: pytest.MonkeyPatch) -> None:
    import sandbox.image as image

    def no_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("must not run a build")

    monkeypatch.setattr(image, "image_exists", lambda tag: True)
    monkeypatch.setattr(image.subprocess, "run", no_build)
    messages: list[str] = []
    assert build_image(log=messages.append) == ImageRecipe().tag
    assert "exists" in messages[0]


def test_config_rejects_unknown_fields_and_bad_values() -> None:
    with pytest.raises(ValidationError, match="pool_szie"):
        SandboxConfig(pool_szie=3)
    with pytest.raises(ValidationError, match="backend"):
        SandboxConfig(backend="podman")
    with pytest.raises(ValidationError, match="memory_mb"):
        SandboxConfig(limits={"memory_mb": 0})
    config = SandboxConfig()
    assert config.pool_size >= 2 and config.limits.to_limits().memory_mb == 512


def test_auto_falls_back_to_bwrap_loudly(monkeypatch: pytest.MonkeyPatch, caplog, capsys) -> None:  # noqa: ANN001
    import shutil

    import sandbox.docker_backend as docker_backend
    from sandbox import open_sandbox

    if shutil.which("bwrap") is None:
        resources.unavailable("bwrap", "bubblewrap is not installed (apt-get install bubblewrap)")

    def no_engine(timeout: float = 60.0) -> None:
        raise SandboxError("no Docker engine answers (test)")

    monkeypatch.setattr(docker_backend, "docker_client", no_engine)
    with caplog.at_level(logging.WARNING):
        try:
            sandbox = open_sandbox(SandboxConfig(backend="auto", pool_size=1))
        except SandboxError as err:
            resources.unavailable("bwrap", f"bwrap cannot run here: {err}")
    try:
        assert sandbox.backend == "bwrap"
        assert "WEAKER ISOLATION" in capsys.readouterr().err
        assert any("WEAKER ISOLATION" in r.getMessage() for r in caplog.records)
    finally:
        sandbox.close()
    with pytest.raises(SandboxError, match="no Docker engine"):
        open_sandbox(SandboxConfig(backend="docker", pool_size=1))


@pytest.mark.docker
def test_docker_is_the_default_where_an_engine_answers(docker_sandbox) -> None:  # noqa: ANN001
    from sandbox import open_sandbox

    sandbox = open_sandbox(SandboxConfig(pool_size=1))
    try:
        assert sandbox.backend == "docker"
    finally:
        sandbox.close()


@pytest.mark.docker
def test_missing_image_is_a_clear_error() -> None:
    from sandbox.docker_backend import DockerSandbox

    with pytest.raises(SandboxError, match="assay sandbox build-image"):
        DockerSandbox(SandboxConfig(image="assay-sandbox:does-not-exist", pool_size=1))


@pytest.mark.docker
def test_cli_status_build_image_and_reap(docker_sandbox) -> None:  # noqa: ANN001
    def assay(*args: str) -> subprocess.CompletedProcess:
        command = [str(Path(sys.executable).with_name("assay")), *args]
        return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)

    status = assay("sandbox", "status")
    assert status.returncode == 0, status.stderr
    assert "present" in status.stdout
    assert all(w.container.name in status.stdout for w in docker_sandbox.pool._workers)
    built = assay("sandbox", "build-image")  # the tag exists: nothing is built
    assert built.returncode == 0 and "exists" in built.stdout
    reaped = assay("sandbox", "reap")  # only dead owners' containers: ours stay
    assert reaped.returncode == 0 and "removed" in reaped.stdout
    request = ExecRequest(files=(), steps=(Step("run", ("true",)),))
    assert all(docker_sandbox.execute(request).ok for _ in range(docker_sandbox.config.pool_size))
