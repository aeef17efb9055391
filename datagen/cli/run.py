"""`assay run`: run a pipeline spec as a job."""

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from datagen.cli.common import console, open_model_store, open_registry


def run(
    pipeline: Annotated[Path, typer.Argument(help="Pipeline spec (YAML).")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a spec field: KEY=VALUE, e.g. stages.1.sampling.n=2."),
    ] = None,
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address; default: Ray in this process.")
    ] = None,
) -> None:
    """Run a pipeline: generate, verify, select, and register the resulting datasets."""
    from datagen.job import prepare_job, run_job
    from datagen.spec import load_spec

    loaded = load_spec(pipeline, set_ or [])
    registry = open_registry()
    with console.status("checking spec, templates, models and source"):
        job = prepare_job(loaded, registry, open_model_store())
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
    for stage, usage in report.usage.items():
        rate = usage["completion_tokens"] / report.wall_s if report.wall_s else 0.0
        console.print(
            f"{stage}: {usage['completions']} completions, {usage['prompt_tokens']} prompt tokens, "
            f"{usage['completion_tokens']} completion tokens ({rate:.0f} tok/s over the job)"
        )
    console.print("\ninspect with:")
    for output in report.outputs:
        console.print(f"  assay data show {output.ref}\n  assay data head {output.ref} -n 5")
    if report.dead_letter:
        console.print(f"  assay data head {report.dead_letter.ref} -n 5")
