"""`assay eval`: evaluate models on registered datasets."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from assay.cli.common import console, err_console
from assay.cli.progress import progress_display

if TYPE_CHECKING:
    from evals.run import SuiteRun

app = typer.Typer(
    help="Evaluate models on the evaluation suites, compare them, check reward models.", no_args_is_help=True
)


@app.command("rm")
def eval_rm(
    model: Annotated[str, typer.Argument(help="Reward model: a stored model name or an HF folder.")],
    dataset: Annotated[
        str, typer.Option(help="Labelled pairs `NAME@VERSION` (kind rm_pairs or preference).")
    ],
    limit: Annotated[int | None, typer.Option(help="Evaluate only the first N pairs.")] = None,
    max_length: Annotated[
        int | None,
        typer.Option(
            help="Tokens per sample, prompts cut from the left; default: the model's training length."
        ),
    ] = None,
    batch_pairs: Annotated[int, typer.Option(help="Pairs per forward pass.")] = 16,
    bins: Annotated[int, typer.Option(help="Reliability bins of sigma(delta r).")] = 10,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Pairwise accuracy and calibration (ECE, reliability bins) of a reward model, and whether
    it beats the length baselines (longer wins, shorter wins) by more than one standard error."""
    import json

    from assay.cli.common import open_model_store, open_registry
    from reward_model.check import evaluate_on_pairs
    from reward_model.config import RMConfigError
    from reward_model.eval import format_report, format_trust

    resolved = open_model_store().resolve(model)
    version = open_registry().open(dataset)
    with progress_display(err_console if json_out else console) as progress:
        task = progress.add_task("scoring", unit="pairs")
        try:
            evaluation = evaluate_on_pairs(
                resolved.path, version, limit=limit, max_length=max_length, batch_pairs=batch_pairs,
                bins=bins, on_pairs=lambda n: progress.set_total(task, n),
                on_batch=lambda n: progress.advance(task, n),
            )  # fmt: skip
        except RMConfigError as err:
            raise RMConfigError(f"{model} on --dataset {dataset}: {err}") from err
    report, trust, counts, dropped = (
        evaluation.report,
        evaluation.trust,
        evaluation.counts,
        evaluation.invalid_dropped,
    )
    if json_out:
        extra = {"trust": trust.as_dict(), "data": counts, "invalid_dropped": dict(dropped)}
        console.print_json(json.dumps(report.as_dict() | extra))
        return
    console.print(f"{resolved.ref} on {version.ref}", highlight=False)
    console.print(format_report(report), highlight=False)
    console.print(format_trust(trust), highlight=False, soft_wrap=True)  # the verdict stays one line
    if counts["truncated"] or counts["dropped"] or dropped:
        console.print(
            f"{counts['truncated']} pairs had their prompt cut from the left; dropped: "
            f"{dict(dropped) | counts['dropped'] or 'none'}",
            highlight=False,
        )


@app.command("model")
def eval_model(
    model: Annotated[str, typer.Argument(help="A stored model name, an HF folder or a .gguf file.")],
    suite: Annotated[
        list[str] | None,
        typer.Option(help="Suite or group, repeatable: core, ifeval, mgsm, xstest, ... (default core)."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="Only the first N items of each suite (round-robin over languages).")
    ] = None,
    backend: Annotated[str, typer.Option(help="Engine: hf or vllm.")] = "hf",
    max_tokens: Annotated[
        int | None, typer.Option(help="Reply length limit for every suite (default: each suite's own).")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Conversations per engine call.")] = None,
    threads: Annotated[int | None, typer.Option(help="Torch threads of the hf engine (default 1).")] = None,
    mgsm_languages: Annotated[
        str | None, typer.Option(help="MGSM languages, comma-separated (default: en,es,fr,ja,de,zh,ru).")
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not use the LLM-call cache.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Evaluate a model on the evaluation suites; a stored model keeps the results (`models show`)."""
    from assay.cli.common import open_model_store, open_registry
    from assay.cli.output import emit_json, emit_table
    from datagen.job import cache_uri
    from evals.run import evaluate_model

    store = open_model_store()
    languages = (
        [lang.strip() for lang in mgsm_languages.split(",") if lang.strip()] if mgsm_languages else None
    )
    with progress_display(err_console) as progress:  # stdout keeps only the results
        current: list[int] = []  # the running suite's task

        def start(name: str) -> None:
            current[:] = [progress.add_task(name, unit="items")]

        def advance(done: int, total: int) -> None:
            progress.set_total(current[0], total)
            progress.advance(current[0], done - progress.tasks[current[0]].done)

        runs = evaluate_model(
            model,
            suite or ["core"],
            backend=backend,
            limit=limit,
            max_tokens=max_tokens,
            batch_size=batch_size,
            threads=threads,
            options={"languages": languages},
            store=store,
            cache_uri="" if no_cache else cache_uri(open_registry()),
            progress=advance,
            on_suite=start,
        )
    stored = any(run.stored is not None for run in runs)
    if json_out:
        emit_json({"model": model, "stored": stored, "runs": [_run_json(run) for run in runs]})
        return
    rows = [
        (run.result.suite, *_metric_cells(metric.as_dict())) for run in runs for metric in run.result.metrics
    ]
    emit_table(f"evaluation of {model}", ["suite", "metric", "value ± stderr", "n"], rows)
    _storage_note(model, f"{len(runs)} runs" if stored else None)


def _storage_note(model: str, stored: str | None) -> None:
    """Say on stderr where the results went: `stored` (what was stored) with the model, or nowhere."""
    if stored:
        err_console.print(
            f"stored {stored} with {model}: see `assay models show {model}`", highlight=False, soft_wrap=True
        )
    else:
        err_console.print(
            f"{model} is not a stored model: results printed, not stored "
            "(register it in the model store to keep them)",
            highlight=False,
            soft_wrap=True,
        )


def _metric_cells(metric: dict[str, Any]) -> tuple[str, str, int]:
    """(name, "value ± stderr", n) of a metric as a table shows it; NaN as "-"."""
    value, stderr = metric["value"], metric["stderr"]
    if value is None or value != value:
        return metric["name"], "-", metric["n"]
    shown = f"{value:.3f} ± {stderr:.3f}" if stderr is not None and stderr == stderr else f"{value:.3f}"
    return metric["name"], shown, metric["n"]


def _run_json(run: "SuiteRun") -> dict[str, Any]:
    """A suite run as JSON: its stored summary, or (not stored) the same fields without an id."""
    if run.stored is not None:
        return run.stored.summary()
    result = run.result
    return {
        "suite": result.suite,
        "eval_set": result.eval_set,
        "metrics": [metric.as_dict() for metric in result.metrics],
        "wall_s": round(result.wall_s, 3),
        "settings": result.settings,
        "generation": run.generation,
    }


@app.command("winrate")
def eval_winrate(
    model: Annotated[str, typer.Argument(help="The model under evaluation: a stored name or an HF folder.")],
    reference: Annotated[str, typer.Option(help="The model it is compared with (stored name or HF folder).")],
    reward_model: Annotated[str, typer.Option(help="The reward model that scores both replies.")],
    prompts: Annotated[
        str | None,
        typer.Option(help="Held-out prompts: a dataset `NAME@VERSION` with a prompt or messages column."),
    ] = None,
    suite: Annotated[
        str | None, typer.Option(help="Held-out prompts of a suite: ifeval (the default: its test split).")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N prompts.")] = None,
    max_tokens: Annotated[
        int | None, typer.Option(help="Reply length limit of both models (default 512).")
    ] = None,
    backend: Annotated[str, typer.Option(help="Engine: hf or vllm.")] = "hf",
    batch_size: Annotated[int | None, typer.Option(help="Conversations per engine call.")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not use the LLM-call cache.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Win rate of MODEL over a reference model by a reward model, raw and length-controlled, on
    held-out prompts; a stored MODEL keeps it as the suite `winrate-vs-REF` (`models show`)."""
    from assay.cli.common import open_model_store, open_registry
    from assay.cli.output import emit_json, emit_table
    from datagen.job import cache_uri
    from evals.base import EvalError
    from evals.winrate_run import check_models, dataset_prompts, ifeval_prompts, run_win_rate

    if prompts is not None and suite is not None:
        raise EvalError("give --prompts or --suite, not both")
    if suite not in (None, "ifeval"):
        raise EvalError(f"--suite for a win rate must be ifeval (its held-out prompts), got {suite!r}")
    if limit is not None and limit < 1:
        raise EvalError(f"--limit must be at least 1, got {limit}")
    store, registry = open_model_store(), open_registry()
    check_models(model, reference, reward_model, store)  # before the prompts or a model load
    chosen = dataset_prompts(registry.open(prompts), limit) if prompts else ifeval_prompts(limit)
    with progress_display(err_console) as progress:  # stdout keeps only the results
        tasks: dict[str, int] = {}

        def advance(ref: str, done: int, total: int) -> None:
            if ref not in tasks:
                tasks[ref] = progress.add_task(f"generating {ref}", unit="prompts")
            progress.set_total(tasks[ref], total)
            progress.advance(tasks[ref], done - progress.tasks[tasks[ref]].done)

        done = run_win_rate(
            model, reference, reward_model, chosen, backend=backend, max_tokens=max_tokens,
            batch_size=batch_size, limit=limit, store=store,
            cache_uri="" if no_cache else cache_uri(registry), progress=advance,
        )  # fmt: skip
    report, run = done.report, done.run
    stored = run.stored is not None
    if json_out:
        emit_json(
            {k: None if isinstance(v, float) and v != v else v for k, v in report.as_dict().items()}
            | {"model": model, "reference": reference, "reward_model": reward_model, "prompts": chosen.source,
               "suite": run.result.suite, "stored": stored, "run_id": run.stored.id if run.stored else None}
        )  # fmt: skip
        return
    rows = [_metric_cells(metric.as_dict()) for metric in report.metrics()]
    rows += [
        ("wins / ties / losses", f"{report.wins} / {report.ties} / {report.losses}", report.n),
        (f"mean length ({report.length_unit}) of {model} / {reference}",
         f"{report.mean_length_a:.1f} / {report.mean_length_b:.1f}", report.n),
    ]  # fmt: skip
    if report.failed:
        rows.append(("prompts left out (generation failed)", str(report.failed), report.n + report.failed))
    emit_table(
        f"win rate of {model} over {reference} by {reward_model} on {chosen.source}",
        ["metric", "value ± stderr", "n"],
        rows,
    )
    _storage_note(model, f"the win rate as suite {run.result.suite}" if stored else None)


@app.command("compare")
def eval_compare(
    models: Annotated[list[str], typer.Argument(help="Stored models; the first is the reference.")],
    suite: Annotated[
        list[str] | None, typer.Option(help="Only this suite, repeatable (default: every suite measured).")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(help="Write a PNG: one panel per metric, bars with error bars.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
) -> None:
    """Compare models on their latest evaluation runs: value ± stderr per metric, marked where a
    model beats (+) or trails (-) the first by more than one combined standard error."""
    from assay.cli.common import open_model_store
    from assay.cli.output import emit_json, emit_table
    from evals.compare import compare_models, legend, plot_comparison, table_rows

    comparison = compare_models(open_model_store(), models, suite)
    if plot is not None:
        plot_comparison(comparison, plot)
    if json_out:
        emit_json(comparison.as_dict() | {"plot": str(plot) if plot else None})
        return
    columns, rows = table_rows(comparison)
    emit_table("comparison (latest run of each suite)", columns, rows)
    err_console.print(legend(comparison), highlight=False, soft_wrap=True)
    for warning in comparison.warnings:
        err_console.print(f"warning: {warning}", style="yellow", highlight=False, soft_wrap=True)
    if plot is not None:
        err_console.print(f"plot written to {plot}", highlight=False)
