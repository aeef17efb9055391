"""`assay run`: run a pipeline spec as a job."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from assay.cli.common import console, open_model_store, open_registry
from assay.cli.progress import progress_display

if TYPE_CHECKING:
    from datagen.job import JobReport


def run(
    pipeline: Annotated[Path, typer.Argument(help="Pipeline spec (YAML).")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a spec field: KEY=VALUE, e.g. stages.1.sampling.n=2."),
    ] = None,
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address; default: Ray in this process.")
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Redo model calls, sandbox and score stages done before.")
    ] = False,
) -> None:
    """Run a pipeline: generate, verify, select, and register the resulting datasets."""
    from datagen.job import prepare_job, run_job
    from datagen.spec import load_spec

    loaded = load_spec(pipeline, set_ or [])
    registry = open_registry()
    with console.status("checking spec, templates, models and source"):
        job = prepare_job(loaded, registry, open_model_store(), use_cache=not no_cache)
    with progress_display(console) as progress:
        report = run_job(
            job, registry, address=address, progress=progress,
            log=lambda line: console.print(line, soft_wrap=True, highlight=False),
        )  # fmt: skip
    print_report(report)


def print_report(report: "JobReport") -> None:
    """The job's outputs, row counts and generation figures, readable at 80 columns."""
    table = Table(title=f"job {report.job_id}", title_justify="left")
    table.add_column("registered", overflow="fold")
    table.add_column("kind")
    table.add_column("rows", justify="right")
    for output in report.outputs:
        table.add_row(output.ref, output.kind, str(output.rows))
    if report.dead_letter:
        table.add_row(report.dead_letter.ref, "dead letters", str(report.dead_letter.rows))
    console.print(table)
    for name in report.skipped:
        console.print(f"{name}: no rows fit its kind; nothing registered")
    console.print(
        f"{report.rows_in} rows in, {report.rows_in - report.rows_failed} finished, "
        f"{report.rows_failed} failed (dead letters) in {report.wall_s:.1f} s"
    )
    # One row per figure and one column per stage and model: however long a model's name, the
    # headers never have to be cut to fit 80 columns.
    columns = [(stage, model, u) for stage, models in report.usage.items() for model, u in models.items()]
    if columns:
        usage = Table(title="generation", title_justify="left")
        usage.add_column("")
        for stage, model, _ in columns:
            usage.add_column(f"{stage}\n{model}", justify="right", overflow="fold")
        figures = (
            ("completions generated", lambda u: str(int(u["completions"]))),
            ("cache hits", lambda u: str(int(u["cache_hits"]))),
            ("prompt tokens", lambda u: str(int(u["prompt_tokens"]))),
            ("completion tokens", lambda u: str(int(u["completion_tokens"]))),
            ("generation s", lambda u: f"{u['generate_s']:.1f}"),
            ("completion tokens/s", lambda u: f"{u['tokens_per_s']:.0f}"),
        )
        for label, show in figures:
            usage.add_row(label, *(show(u) for _, _, u in columns))
        console.print(usage)
    if report.log_dir is not None:
        console.print(f"Ray's logs: {report.log_dir}", highlight=False, soft_wrap=True)
    console.print("\ninspect with:")
    for output in report.outputs:
        console.print(f"  assay data show {output.ref}\n  assay data head {output.ref} -n 5")
    if report.dead_letter:
        console.print(f"  assay data head {report.dead_letter.ref} -n 5")
