"""`assay sandbox`: build the sandbox image, see what runs, remove leftovers."""

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from assay.cli.common import console

app = typer.Typer(help="The code-execution sandbox (Docker image, warm containers).", no_args_is_help=True)


@app.command("build-image")
def build_image(
    force: Annotated[bool, typer.Option(help="Rebuild even when the image tag exists.")] = False,
    dockerfile: Annotated[
        Path | None,
        typer.Option(help="Build from this Dockerfile instead; `${BASE}` in it names the default image."),
    ] = None,
    tag: Annotated[str | None, typer.Option(help="Tag of a --dockerfile image (default: a hash).")] = None,
) -> None:
    """Build the sandbox image from Debian packages (debootstrap + docker import), once per recipe;
    or from a Dockerfile (docker SDK), to extend it or where a registry is reachable."""
    from sandbox.docker_backend import docker_client
    from sandbox.dockerfile import build_from_dockerfile
    from sandbox.image import build_image as build

    if tag is not None and dockerfile is None:
        raise typer.BadParameter(
            "--tag names a --dockerfile image; the default image's tag is its recipe's hash"
        )
    client = docker_client()  # a clear error first when no engine answers
    if dockerfile is not None:
        tag = build_from_dockerfile(dockerfile, tag=tag, client=client, log=console.print)
        console.print(f"sandbox image ready: {tag} (use it with `image: {tag}` in a sandbox config)")
        return
    tag = build(force=force, log=console.print)
    console.print(f"sandbox image ready: {tag}")


@app.command("build-rootfs")
def build_rootfs(
    target: Annotated[Path, typer.Argument(help="New or empty directory to unpack the tree into.")],
) -> None:
    """Unpack the image's Debian tree into a directory: the bwrap fallback's root (`bwrap_rootfs`)."""
    from sandbox.image import build_rootfs as build

    build(target, log=console.print)
    console.print(f"sandbox tree ready: {target} (set bwrap_rootfs: {target.resolve()})")


@app.command("status")
def status() -> None:
    """Show the engine, the image, the bwrap fallback and every sandbox container with its owner."""
    import shutil

    from sandbox.docker_backend import docker_client, list_sandbox_containers, owner_is_alive
    from sandbox.errors import SandboxError
    from sandbox.image import ImageRecipe, image_exists

    tag = ImageRecipe().tag
    try:
        client = docker_client(timeout=20)
    except SandboxError as err:
        console.print(f"docker: [bold red]{err}[/]")
        console.print(f"bwrap fallback: {'available' if shutil.which('bwrap') else 'NOT installed'}")
        return
    console.print(f"docker: engine answers; image {tag}: {'present' if image_exists(tag) else 'MISSING'}")
    console.print(f"bwrap fallback: {'available' if shutil.which('bwrap') else 'not installed'}")
    table = Table(title="sandbox containers", title_justify="left")
    for column in ("name", "status", "uid", "owner", "owner alive"):
        table.add_column(column)
    for container in list_sandbox_containers(client):
        labels = container.labels
        owner = labels.get("assay.owner", "")
        alive = "yes" if owner_is_alive(owner) else "[red]no: reap it[/]"
        table.add_row(container.name, container.status, labels.get("assay.uid", ""), owner, alive)
    console.print(table)


@app.command("reap")
def reap(
    all_: Annotated[
        bool, typer.Option("--all", help="Also remove containers of live owners (stops their sandboxes).")
    ] = False,
) -> None:
    """Remove sandbox containers whose owner process is dead (or all of them with --all)."""
    from sandbox.docker_backend import docker_client, reap_leftovers

    removed = reap_leftovers(docker_client(), everything=all_)
    console.print(f"removed {removed} sandbox container(s)")
