"""The `assay` command. Heavy libraries are imported inside commands, so `--help` is instant."""

import os
import sys
import warnings
from typing import Annotated

import typer
from rich.markup import escape

from assay.cli import data, eval, jobs, judge, merge, models, run, sandbox, train, ui
from assay.cli.common import CliState, err_console

app = typer.Typer(
    name="assay",
    help="Synthetic data for LLM post-training: pipelines, versioned datasets, models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("run")(run.run)
app.add_typer(data.app, name="data")
app.add_typer(models.app, name="models")
app.add_typer(train.app, name="train")
app.add_typer(merge.app, name="merge")
app.add_typer(sandbox.app, name="sandbox")
app.add_typer(eval.app, name="eval")
app.add_typer(jobs.app, name="jobs")
app.add_typer(judge.app, name="judge")
app.command("ui")(ui.ui)


def _print_version(value: bool | None) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"assay {version('assay')}")
        raise typer.Exit()


@app.callback()
def main_options(
    registry: Annotated[
        str | None,
        typer.Option(help="Registry root (path or URI); default $ASSAY_REGISTRY or ~/.cache/assay/registry."),
    ] = None,
    version: Annotated[
        bool | None,
        typer.Option("--version", is_eager=True, callback=_print_version, help="Print the version and exit."),
    ] = None,
) -> None:
    """Synthetic data for LLM post-training: pipelines, versioned datasets, models."""
    CliState.registry_root = registry


def main() -> None:
    """Console entry point: run the app, reporting bad input as one clear error with exit 2."""
    # Lance logs a warning for every first write to a new dataset; keep the terminal for results.
    os.environ.setdefault("LANCE_LOG", "error")
    # Nothing is reported to outside servers: Ray usage statistics stay off (vLLM's: in its engine).
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # lance warns at every os.fork() once imported; the forks under assay (Ray's workers, vLLM's
    # engine, the sandbox) exec a fresh interpreter or never touch the parent's lance datasets.
    warnings.filterwarnings("ignore", message="lance is not fork-safe", category=UserWarning)
    try:
        app()
    except Exception as err:  # noqa: BLE001 - sorted below into user errors and bugs
        from assay.errors import AssayError

        if isinstance(err, AssayError):
            err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
            sys.exit(2)
        raise
