"""The sandbox image's engine side: looking a tag up and importing a tree, through the docker SDK.

These use the real engine with a tiny tree and a throwaway tag, so they never rebuild (or touch)
the real sandbox image.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.errors import SandboxError
from sandbox.image import IMAGE_CHANGES, image_exists, import_rootfs


@pytest.fixture
def throwaway_tag() -> Iterator[str]:
    """A tag no image has; whatever a test imports under it is removed afterwards."""
    from sandbox.docker_backend import docker_client

    tag = f"assay-sandbox-test:{uuid.uuid4().hex[:12]}"
    yield tag
    client = docker_client()
    if image_exists(tag, client):
        client.images.remove(tag, force=True)


@pytest.mark.docker
def test_import_creates_the_tagged_image_with_its_path(tmp_path: Path, throwaway_tag: str) -> None:
    from sandbox.docker_backend import docker_client

    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc" / "marker").write_text("assay\n")
    assert not image_exists(throwaway_tag)

    image_id = import_rootfs(rootfs, throwaway_tag)

    assert image_exists(throwaway_tag)
    image = docker_client().images.get(throwaway_tag)
    assert image.id == image_id
    assert throwaway_tag in image.tags
    env = image.attrs["Config"]["Env"]
    assert [f"ENV {value}" for value in env] == list(IMAGE_CHANGES)


@pytest.mark.docker
def test_importing_a_missing_tree_is_a_clear_error(tmp_path: Path, throwaway_tag: str) -> None:
    with pytest.raises(SandboxError, match="not a directory"):
        import_rootfs(tmp_path / "absent", throwaway_tag)
    assert not image_exists(throwaway_tag)


@pytest.mark.docker
def test_an_import_the_engine_refuses_is_a_clear_error(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    # Docker repository names must be lower case, so the engine rejects this one.
    bad_tag = f"Assay-Sandbox-Test:{uuid.uuid4().hex[:12]}"
    with pytest.raises(SandboxError, match="refused to import") as info:
        import_rootfs(rootfs, bad_tag)
    assert "lowercase" in str(info.value) or "invalid" in str(info.value)


def test_a_tag_without_a_repository_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="repository:tag"):
        import_rootfs(tmp_path, "justaname")


def test_no_engine_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/assay-docker.sock")
    with pytest.raises(SandboxError, match="no Docker engine answers"):
        image_exists("assay-sandbox:anything")
