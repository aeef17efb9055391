"""`assay train`: train experts from registered datasets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from assay.cli.common import console, open_model_store, open_registry
from assay.cli.progress import progress_display

if TYPE_CHECKING:
    from trainer.loop import StepReport

app = typer.Typer(help="Train experts from registered datasets.", no_args_is_help=True)

METHODS = {
    "sft": "Supervised fine-tuning on an sft dataset (loss on assistant tokens only).",
    "dpo": "Direct preference optimisation on a preference dataset.",
    "ipo": "Identity preference optimisation on a preference dataset.",
    "slic": "SLiC-HF calibration (hinge) loss on a preference dataset.",
    "copg": "Offline contrastive policy gradient (CoPG) on a preference dataset.",
}


def _train(method: str, config_path: Path, overrides: list[str]) -> None:
    from trainer.config import load_train_config
    from trainer.run import prepare_training, run_training

    config = load_train_config(config_path, method, overrides)
    store = open_model_store()
    prepared = prepare_training(config, open_registry(), store)
    console.print(f"{method}: {prepared.model.ref} on {prepared.dataset.ref} -> {prepared.output}")
    unit = "pairs" if config.is_preference else "tokens"
    with progress_display(console) as progress:
        result = run_training(prepared, store, log=console.print, on_step=step_feed(progress, method, unit))
    console.print(f"registered model [bold]{result.name}[/] at {result.path}")
    console.print(f"metrics: {result.metrics}")
    console.print(f"inspect with: assay models show {result.name}")


def step_feed(progress: Any, name: str, unit: str) -> Callable[[StepReport], None]:
    """A training loop's `on_step` that drives one progress task: steps of total, `unit`/s
    (target tokens or pairs), the latest loss, and the ETA."""
    task = progress.add_task(name, unit="steps")
    seen = {"units": 0}

    def on_step(report: StepReport) -> None:
        if progress.tasks[task].total != report.total:
            progress.set_total(task, report.total)
        progress.advance(task, 1, values={"loss": report.loss}, **{unit: report.units - seen["units"]})
        seen["units"] = report.units

    return on_step


def _command(method: str):  # noqa: ANN202 - a Typer command function
    def command(
        config: Annotated[Path, typer.Argument(help="Training config (YAML).")],
        set_: Annotated[list[str] | None, typer.Option("--set", help="Override a field: KEY=VALUE.")] = None,
    ) -> None:
        _train(method, config, set_ or [])

    command.__doc__ = METHODS[method]
    return command


for _method in METHODS:
    app.command(_method)(_command(_method))


@app.command("rm")
def train_rm(
    config: Annotated[Path, typer.Argument(help="Reward-model config (YAML).")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a field: KEY=VALUE.")] = None,
) -> None:
    """Two-stage Bradley–Terry reward model on rm_pairs datasets (ensemble relabelling, packing)."""
    from reward_model.config import load_rm_config
    from reward_model.train import prepare_rm_training, run_rm_training

    store = open_model_store()
    prepared = prepare_rm_training(load_rm_config(config, set_), open_registry(), store)
    refs = ", ".join(d.ref for d in prepared.datasets)
    console.print(f"rm: {prepared.model.ref} on {refs} -> {prepared.output}", highlight=False)
    with progress_display(console) as progress:
        feeds: dict[int, Callable[[StepReport], None]] = {}

        def on_step(stage: int, report: StepReport) -> None:
            if stage not in feeds:
                feeds[stage] = step_feed(progress, f"stage {stage}", "pairs")
            feeds[stage](report)

        result = run_rm_training(
            prepared, store, log=lambda line: console.print(line, highlight=False), on_step=on_step
        )
    console.print(f"registered reward model [bold]{result.name}[/] at {result.path}")
    for key in ("eval_before", "eval"):
        if key in result.metrics:
            console.print(f"{key}: {result.metrics[key]}", highlight=False)
    console.print(f"inspect with: assay models show {result.name}; assay eval rm {result.name} --dataset ...")
