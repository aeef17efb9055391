"""`assay sandbox`: build the sandbox image, see what runs, remove leftovers."""

from pathlib import Path
from typing import Annotated, Any

import typer

from assay.cli.common import console
from assay.cli.output import JsonOption, emit_json, emit_table

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
def status(as_json: JsonOption = False) -> None:
    """Show the engine, the image, the bwrap fallback and every sandbox container with its owner."""
    import shutil

    from sandbox.docker_backend import docker_client, list_sandbox_containers, owner_is_alive
    from sandbox.errors import SandboxError
    from sandbox.image import ImageRecipe, image_exists

    tag = ImageRecipe().tag
    report: dict[str, Any] = {
        "engine": None,
        "image": tag,
        "image_present": False,
        "bwrap": bool(shutil.which("bwrap")),
    }
    containers: list[dict[str, Any]] = []
    try:
        client = docker_client(timeout=20)
    except SandboxError as err:
        report["engine"] = f"unavailable: {err}"
    else:
        report["engine"] = "answers"
        report["image_present"] = image_exists(tag)
        for container in list_sandbox_containers(client):
            labels = container.labels
            owner = labels.get("assay.owner", "")
            containers.append(
                {"name": container.name, "status": container.status, "uid": labels.get("assay.uid", ""),
                 "owner": owner, "owner_alive": owner_is_alive(owner)}
            )  # fmt: skip
    if as_json:
        emit_json(report | {"containers": containers})
        return
    if report["engine"] != "answers":
        console.print(f"docker: [bold red]{report['engine']}[/]")
    else:
        console.print(
            f"docker: engine answers; image {tag}: {'present' if report['image_present'] else 'MISSING'}"
        )
    console.print(f"bwrap fallback: {'available' if report['bwrap'] else 'NOT installed'}")
    rows = [
        [c["name"], c["status"], c["uid"], c["owner"], "yes" if c["owner_alive"] else "no: reap it"]
        for c in containers
    ]
    emit_table("sandbox containers", ("name", "status", "uid", "owner", "owner alive"), rows)


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
