"""The sandbox image: Debian's packages unpacked by debootstrap, then imported into Docker.

No image registry is reachable on the machines this runs on, so the image is made from Debian
packages alone. It is tagged `assay-sandbox:<hash of the recipe>` and built only when that tag is
missing. The engine is driven through the docker SDK (`images.get`, `api.import_image`), the
same client the Docker backend uses. The in-container fork server (`sandbox/server.py`) is *not*
part of the image: it is bind-mounted read-only at container start, so editing it never forces a
rebuild.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from sandbox.errors import SandboxError

IMAGE_REPOSITORY = "assay-sandbox"
# Toolchains of the code expert's priority languages, all Debian packages (bookworm versions:
# Python 3.11, g++ 12, Java 17, Go 1.19, Rust 1.63, Node 18, tsc 4.8, GnuCOBOL 3.1, SQLite 3.40).
DEFAULT_PACKAGES = (
    "python3",
    "g++",
    "default-jdk-headless",
    "golang-go",
    "rustc",
    "nodejs",
    "node-typescript",
    "gnucobol",
    "sqlite3",
)
# A fixed range of sandbox uids is listed in /etc/passwd so tools that look their user up
# (Java's user.home, getpwuid in libc) work; each container picks one uid from it.
SANDBOX_UID_BASE = 20000
SANDBOX_UID_COUNT = 100
# Set in the imported image's config: a bare `docker import` leaves PATH empty.
IMAGE_CHANGES = ("ENV PATH=/usr/local/bin:/usr/bin:/bin",)
# The engine answers an import only once it has unpacked the whole tree (about 2 GB).
IMPORT_TIMEOUT_S = 1800.0
_TAR_CHUNK = 1 << 20


@dataclass(frozen=True)
class ImageRecipe:
    """Everything that decides the image's content; its hash is the image tag.

    Attributes:
        suite: Debian release given to debootstrap.
        mirror: Debian mirror URL.
        packages: Packages installed on top of the minbase variant.
        revision: Bumped when the build steps below change the result.
    """

    suite: str = "bookworm"
    mirror: str = "http://deb.debian.org/debian"
    packages: tuple[str, ...] = field(default=DEFAULT_PACKAGES)
    revision: int = 1

    def digest(self) -> str:
        """A short, stable hash of the recipe (order of packages does not matter)."""
        content = asdict(self) | {"packages": sorted(self.packages)}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def tag(self) -> str:
        """The image reference, e.g. `assay-sandbox:0123456789abcdef`."""
        return f"{IMAGE_REPOSITORY}:{self.digest()}"


def _client(timeout: float = 60.0) -> Any:
    # Imported here: docker_backend imports this module for the uid range.
    from sandbox.docker_backend import docker_client

    return docker_client(timeout=timeout)


def image_exists(tag: str, client: Any | None = None) -> bool:
    """Say whether the local Docker engine holds an image with this tag.

    Args:
        tag: An image reference such as `assay-sandbox:0123456789abcdef`.
        client: A docker SDK client; by default one for the local engine.

    Returns:
        True when the engine knows the tag.

    Raises:
        SandboxError: No Docker engine answers, or the look-up failed for another reason.
    """
    import docker.errors

    client = client or _client()
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    except docker.errors.DockerException as err:
        raise SandboxError(f"cannot look image {tag} up in the Docker engine: {err}") from err
    return True


def import_rootfs(rootfs: Path, tag: str, client: Any | None = None) -> str:
    """Stream the tree at `rootfs` into the Docker engine as image `tag` (like `docker import`).

    `tar` packs the tree (it keeps owners, device files and hard links as they are) and its
    output is sent to the engine in chunks, so the tree is never held in memory or on disk twice.

    Args:
        rootfs: The root of the file system to import.
        tag: The image reference to create, `repository:tag`.
        client: A docker SDK client; by default one for the local engine with a long timeout.

    Returns:
        The new image's id.

    Raises:
        SandboxError: No engine answers, `tar` failed, or the engine refused the import (each
            with the underlying message).
    """
    import docker.errors
    import requests

    if not rootfs.is_dir():
        raise SandboxError(f"cannot import {rootfs}: not a directory")
    repository, _, version = tag.rpartition(":")
    if not repository or "/" in version:
        raise SandboxError(f"image tag {tag!r} must be repository:tag")
    client = client or _client(timeout=IMPORT_TIMEOUT_S)
    with tempfile.TemporaryFile() as tar_errors:
        # stderr goes to a file: a pipe nobody reads could fill and stall tar.
        tar = subprocess.Popen(
            ["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE, stderr=tar_errors
        )
        assert tar.stdout is not None
        try:
            reply = client.api.import_image(
                src=_chunks(tar.stdout),
                repository=repository,
                tag=version,
                changes=list(IMAGE_CHANGES),
                stream_src=True,
            )
        except (docker.errors.DockerException, requests.RequestException) as err:
            raise SandboxError(f"the Docker engine refused to import {tag}: {err}") from err
        finally:
            tar.stdout.close()
            tar.wait()
        if tar.returncode != 0:
            tar_errors.seek(0)
            tail = tar_errors.read().decode(errors="replace")[-2000:]
            raise SandboxError(f"tar of {rootfs} failed (exit {tar.returncode}): {tail}")
    _raise_for_stream_error(reply, tag)
    try:
        return client.images.get(tag).id
    except docker.errors.DockerException as err:
        raise SandboxError(f"the engine accepted the import of {tag} but has no such image: {err}") from err


def _chunks(stream: IO[bytes]) -> Iterator[bytes]:
    """Yield `stream` in 1 MiB pieces; a generator makes the SDK send a chunked request."""
    yield from iter(lambda: stream.read(_TAR_CHUNK), b"")


def _raise_for_stream_error(reply: str, tag: str) -> None:
    """Raise when the engine's progress stream (one JSON object a line) reports an error."""
    for line in reply.splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict) and message.get("error"):
            raise SandboxError(f"the Docker engine failed to import {tag}: {message['error']}")


def build_image(
    recipe: ImageRecipe | None = None,
    *,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> str:
    """Build the sandbox image unless its tag already exists, and return the tag.

    Runs `debootstrap --variant=minbase --include=<packages>` into a temporary directory (needs
    root and the debootstrap package), adds the sandbox users, strips caches, and streams the
    tree into the engine (`import_rootfs`). The temporary tree is removed whatever happens.

    Args:
        recipe: What to build; the default recipe has all nine toolchains.
        force: Rebuild even when the tag exists.
        log: Progress messages go here.

    Returns:
        The image tag, `assay-sandbox:<recipe hash>`.

    Raises:
        SandboxError: No Docker engine answers, debootstrap is missing, not root, or a build
            step failed (with its output).
    """
    recipe = recipe or ImageRecipe()
    tag = recipe.tag
    if not force and image_exists(tag):
        log(f"sandbox image {tag} exists")
        return tag
    # /var/tmp: on disk, not a RAM-backed /tmp; the tree is about 2 GB.
    workdir = Path(tempfile.mkdtemp(prefix="assay-rootfs-", dir="/var/tmp"))
    rootfs = workdir / "rootfs"
    started = time.monotonic()
    try:
        build_rootfs(rootfs, recipe, log=log)
        log(f"importing the tree into Docker as {tag}")
        import_rootfs(rootfs, tag)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    log(f"sandbox image {tag} built in {time.monotonic() - started:.0f} s")
    return tag


def build_rootfs(target: Path, recipe: ImageRecipe | None = None, log: Callable[[str], None] = print) -> Path:
    """Unpack the recipe's Debian tree into `target` (new or empty): the image's content, also
    usable as the bwrap fallback's root file system (`SandboxConfig.bwrap_rootfs`).

    Raises:
        SandboxError: debootstrap is missing, not root, target not empty, or debootstrap failed.
    """
    recipe = recipe or ImageRecipe()
    debootstrap = find_debootstrap()
    if debootstrap is None:
        raise SandboxError(
            "debootstrap is not installed (apt-get install debootstrap; scripts/ensure_docker.sh does it)"
        )
    if os.geteuid() != 0:
        raise SandboxError(
            "building the sandbox tree needs root (debootstrap creates device files and chowns)"
        )
    if target.exists() and any(target.iterdir()):
        raise SandboxError(f"{target} is not empty")
    log(f"debootstrap {recipe.suite} with {', '.join(recipe.packages)} (about a minute)")
    command = [debootstrap, "--variant=minbase", f"--include={','.join(recipe.packages)}"]
    _run([*command, recipe.suite, str(target), recipe.mirror], "debootstrap")
    _finish_rootfs(target)
    return target


def find_debootstrap() -> str | None:
    """The debootstrap program (often in /usr/sbin, outside a normal user's PATH), or None."""
    found = shutil.which("debootstrap")
    return found or ("/usr/sbin/debootstrap" if Path("/usr/sbin/debootstrap").exists() else None)


def _finish_rootfs(rootfs: Path) -> None:
    """Add the sandbox users and the mount points, drop apt caches and docs to shrink the image."""
    with open(rootfs / "etc/passwd", "a") as passwd, open(rootfs / "etc/group", "a") as group:
        for offset in range(SANDBOX_UID_COUNT):
            uid = SANDBOX_UID_BASE + offset
            passwd.write(f"sandbox{offset}:x:{uid}:{uid}:assay sandbox:/work:/usr/sbin/nologin\n")
            group.write(f"sandbox{offset}:x:{uid}:\n")
    for mount_point in ("work", "opt/assay", "run/assay"):
        (rootfs / mount_point).mkdir(parents=True, exist_ok=True)
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"):
        shutil.rmtree(rootfs / junk, ignore_errors=True)


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).decode(errors="replace")[-2000:]
        raise SandboxError(f"{what} failed (exit {done.returncode}): {tail}")
