"""`assay merge`: linear merges of experts into the model store, and merge-weight search.

assay merge soup.yaml            # same as: assay merge run soup.yaml
assay merge search search.yaml
"""

from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.table import Table
from typer.core import TyperGroup

from assay.cli.common import console, open_model_store
from assay.cli.progress import progress_display


class _DefaultRunGroup(TyperGroup):
    """Treat `assay merge FILE ...` as `assay merge run FILE ...`; subcommand names win."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_DefaultRunGroup,
    help="Merge models: `assay merge MERGE.yaml` (linear, seed, leave_one_out, interpolate; "
    "mergekit linear YAML accepted) or `assay merge search SEARCH.yaml`.",
    no_args_is_help=True,
    subcommand_metavar="MERGE.yaml | COMMAND [ARGS]...",
)


@app.command("run")
def run(
    config: Annotated[Path, typer.Argument(help="Merge config (assay or mergekit linear YAML).")],
    check: Annotated[
        bool, typer.Option("--check", help="Validate and show the merges; write nothing.")
    ] = False,
    name: Annotated[
        str | None, typer.Option("--name", help="Store name of the merge (over the config's `output`).")
    ] = None,
) -> None:
    """Merge models as a config says and register each output in the model store."""
    from trainer.merging.config import load_merge_config
    from trainer.merging.schemes import prepare_merges, run_merge

    store = open_model_store()
    loaded = load_merge_config(config, output=name)
    if check:
        for job, _ in prepare_merges(loaded, store):
            _show_job(job)
        console.print("config is valid; nothing written (--check)")
        return
    with progress_display(console) as progress:
        tasks: list[int] = []  # one per merge job, in MiB written
        seen = {"mib": 0}

        def on_job(job: Any) -> None:
            tasks.append(progress.add_task(job.name, unit="MiB"))
            seen["mib"] = 0

        def on_bytes(done: int, total: int) -> None:  # run_merge calls on_job first
            mib = done // 2**20
            progress.set_total(tasks[-1], max(1, total // 2**20))
            progress.advance(tasks[-1], mib - seen["mib"])
            seen["mib"] = mib

        merged = run_merge(loaded, store, progress=on_bytes, on_job=on_job)
    table = Table(title=f"{len(merged)} merge(s) registered in {store.root}", title_justify="left")
    for column in ("model", "weights", "seconds"):
        table.add_column(column)
    for item in merged:
        table.add_row(item.name, ", ".join(f"{w:.4g}" for w in item.weights), f"{item.seconds:.1f}")
    console.print(table)
    console.print("inspect with: " + "; ".join(f"assay models show {item.name}" for item in merged))


@app.command("search")
def search(
    config: Annotated[Path, typer.Argument(help="Search config: experts, domains, evaluator, budget.")],
) -> None:
    """Search merge weights with an evaluation function; register the best merge."""
    from trainer.merging.config import load_search_config
    from trainer.merging.search import run_search

    loaded = load_search_config(config)
    result = run_search(loaded, open_model_store(), log=console.print)
    table = Table(
        title=f"best merge: {loaded.output} (mean score {result.best.mean:.4f})", title_justify="left"
    )
    for column in ("expert", "domain", "weight", "score", "target"):
        table.add_column(column)
    for expert, weight in zip(loaded.experts, result.best.weights, strict=True):
        table.add_row(
            expert.model,
            expert.domain,
            f"{weight:.4f}",
            f"{result.best.scores[expert.domain]:.4f}",
            f"{result.targets[expert.domain]:.4f}",
        )
    console.print(table)
    console.print(f"{result.evaluations} merges evaluated; inspect with: assay models show {loaded.output}")


def _show_job(job: Any) -> None:
    models = ", ".join(f"{m.ref} × {w:.4g}" for m, w in zip(job.models, job.weights, strict=True))
    console.print(f"[bold]{job.name}[/] ({job.method}): {models}")
