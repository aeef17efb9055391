"""`assay ui`: serve the read-only web viewer of datasets, models and jobs."""

import ipaddress
import os
import secrets
from typing import Annotated

import typer

from assay.cli.common import CliState, console

LOOPBACK_NAMES = frozenset({"localhost"})


def is_loopback(host: str) -> bool:
    """Whether `host` binds only this machine (127.0.0.0/8, ::1, localhost)."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def ui(
    registry: Annotated[
        str | None,
        typer.Option(help="Registry root (path or URI); default: the global --registry, or $ASSAY_REGISTRY."),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to bind; anything but loopback needs --token.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8765,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="ASSAY_UI_TOKEN",
            help="Access token (also $ASSAY_UI_TOKEN); 'generate' makes a random one. Required off loopback.",
        ),
    ] = None,
) -> None:
    """Serve a read-only web viewer of the datasets, models and jobs; prints its URL."""
    import uvicorn

    from assay.settings import default_registry_root, model_store_dir
    from viewer.app import ViewerSettings, create_app
    from viewer.errors import ViewerError

    if token == "generate":
        token = secrets.token_urlsafe(24)
    if not is_loopback(host) and not token:
        raise ViewerError(
            f"binding {host} exposes the viewer beyond this machine: pass --token (or --token generate)"
        )
    root = registry or CliState.registry_root or default_registry_root()
    from viewer.jobs import jobs_path

    settings = ViewerSettings(root, model_store_dir(), token=token or None, jobs_path=jobs_path(root))
    app = create_app(settings)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    address = f"[{shown}]" if ":" in shown else shown
    suffix = f"/?token={token}" if token else "/"
    console.print(f"assay ui: serving {root} (read-only) at http://{address}:{port}{suffix}", highlight=False)
    console.print("press Ctrl-C to stop", style="dim")
    os.environ.setdefault("LANCE_LOG", "error")
    uvicorn.run(app, host=host, port=port, log_level="warning")
