"""`assay eval`: evaluate models on registered datasets."""

from typing import Annotated

import typer

from assay.cli.common import console, err_console
from assay.cli.progress import progress_display

app = typer.Typer(help="Evaluate models on registered datasets.", no_args_is_help=True)


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
    """Pairwise accuracy and calibration (ECE, reliability bins) of a reward model."""
    import json

    from transformers import AutoTokenizer

    from assay.cli.common import open_model_store, open_registry
    from reward_model.config import RMConfig, RMConfigError
    from reward_model.eval import evaluate_rewards, format_report
    from reward_model.model import RewardModel
    from reward_model.train import PAIR_KINDS, pair_rewards, read_pairs

    resolved = open_model_store().resolve(model)
    version = open_registry().open(dataset)
    if version.kind not in PAIR_KINDS:
        raise RMConfigError(
            f"--dataset: {version.ref} is of kind {version.kind!r}; need rm_pairs or preference"
        )
    try:
        reward_model = RewardModel.load(resolved.path)
    except (OSError, ValueError) as err:
        raise RMConfigError(f"{model}: not a reward model folder: {err}") from err
    saved = getattr(reward_model.hf.config, "assay_reward_model", None) or {}
    length = max_length or saved.get("max_length") or 512
    config = RMConfig(datasets=[version.ref], max_length=length, score_batch_pairs=batch_pairs)
    pairs, dropped = read_pairs([version], config, limit)
    if not pairs:
        raise RMConfigError(f"--dataset: {version.ref} has no valid pairs")
    tokenizer = AutoTokenizer.from_pretrained(resolved.path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    with progress_display(err_console if json_out else console) as progress:
        task = progress.add_task("scoring", total=len(pairs), unit="pairs")
        rewards, tokenized, counts = pair_rewards(
            reward_model, tokenizer, pairs, config, on_batch=lambda n: progress.advance(task, n)
        )
    report = evaluate_rewards(rewards[0], rewards[1], [p.label for p in tokenized], n_bins=bins)
    if json_out:
        console.print_json(json.dumps(report.as_dict() | {"data": counts, "invalid_dropped": dict(dropped)}))
        return
    console.print(f"{resolved.ref} on {version.ref}", highlight=False)
    console.print(format_report(report), highlight=False)
    if counts["truncated"] or counts["dropped"] or dropped:
        console.print(
            f"{counts['truncated']} pairs had their prompt cut from the left; dropped: "
            f"{dict(dropped) | counts['dropped'] or 'none'}",
            highlight=False,
        )
