"""`assay run`: run a pipeline spec as a job."""

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from assay.cli.common import console, open_model_store, open_registry


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
        bool, typer.Option("--no-cache", help="Call the models even for calls made before.")
    ] = False,
) -> None:
    """Run a pipeline: generate, verify, select, and register the resulting datasets."""
    from datagen.job import prepare_job, run_job
    from datagen.spec import load_spec

    loaded = load_spec(pipeline, set_ or [])
    registry = open_registry()
    with console.status("checking spec, templates, models and source"):
        job = prepare_job(loaded, registry, open_model_store(), use_cache=not no_cache)
    report = run_job(job, registry, address=address, log=console.print)

    table = Table(title=f"job {report.job_id} registered", title_justify="left")
    for column in ("dataset", "kind", "rows"):
        table.add_column(column)
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
    usage = Table(title="generation", title_justify="left")
    for column in ("stage", "model", "generated", "cache hits", "prompt tok", "completion tok", "s", "tok/s"):
        usage.add_column(column)
    for stage, models in report.usage.items():
        for model, u in models.items():
            usage.add_row(
                stage, model, str(u["completions"]), str(u["cache_hits"]), str(u["prompt_tokens"]),
                str(u["completion_tokens"]), f"{u['generate_s']:.1f}", f"{u['tokens_per_s']:.0f}",
            )  # fmt: skip
    console.print(usage)
    console.print("\ninspect with:")
    for output in report.outputs:
        console.print(f"  assay data show {output.ref}\n  assay data head {output.ref} -n 5")
    if report.dead_letter:
        console.print(f"  assay data head {report.dead_letter.ref} -n 5")
