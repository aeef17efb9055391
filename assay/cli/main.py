"""The `assay` command. Heavy libraries are imported inside commands and command groups when
used, so `--help` and `assay jobs list` start fast."""

import os
import sys
import warnings
from typing import Annotated

import typer
from rich.markup import escape

from assay.cli import run, ui
from assay.cli.common import CliState, err_console
from assay.cli.lazy import lazy_group

# The command groups, imported only when used (assay/cli/lazy.py): `assay jobs list` imports
# assay.cli.jobs and none of the others. A new group is one line here: name -> module with `app`.
GROUPS = {
    "data": "assay.cli.data",
    "models": "assay.cli.models",
    "train": "assay.cli.train",
    "merge": "assay.cli.merge",
    "sandbox": "assay.cli.sandbox",
    "eval": "assay.cli.eval",
    "jobs": "assay.cli.jobs",
    "judge": "assay.cli.judge",
    "loop": "assay.cli.loop",
}

app = typer.Typer(
    name="assay",
    help="Synthetic data for LLM post-training: pipelines, versioned datasets, models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=lazy_group(GROUPS),
)
app.command("run")(run.run)
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
    # transformers draws a "Loading weights" bar for every model it loads (evaluations, training,
    # merges run in this process); the command's own progress is the display.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
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
