"""Two-stage reward-model training (Command A report, 3.2.3), and registration with lineage.

1. Pairs come from registered `rm_pairs` datasets and go to stage 1 or 2 by their `stage`.
2. With an ensemble of reward models, every stage-1 pair gets the members' mean
   sigma(r_chosen - r_rejected) as its label, and a stage-2 gold pair whose label the ensemble
   contradicts (the ensemble prefers the other side) moves to stage 1 with the ensemble's label.
3. Stage 1 trains on the large relabelled set, stage 2 on the high-quality set, each with its
   own cosine schedule, on packed rows, with the shared loop in `trainer.loop` (accumulation
   normalised over the step, NaN check, clipping).
4. The checkpoint is saved as an HF sequence-classification folder and registered as kind
   `reward_model` with the dataset versions, the config and the metrics.
"""

from __future__ import annotations

import random
import resource
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model_store import ModelLineage, ModelStore, ResolvedModel
from reward_model.config import RMConfig, RMConfigError, StageConfig
from reward_model.data import RMPair, TokenizedPair, tokenize_pairs, validate_pairs
from reward_model.eval import EvalReport, evaluate_rewards
from reward_model.packing import PackedRow, collate, group_rows, pack_segments, single_rows
from reward_model.score import pair_segments, score_segments

if TYPE_CHECKING:  # the registry (Lance, ~100 MB) loads only where a run reads datasets
    from datasets_registry import DatasetVersion, Registry
    from trainer.loop import StepReport

PAIR_KINDS = ("rm_pairs", "preference")
Log = Callable[[str], None]


@dataclass
class PreparedRM:
    """Checked inputs of a reward-model run; no model has loaded yet."""

    config: RMConfig
    model: ResolvedModel
    datasets: list[DatasetVersion]
    eval_dataset: DatasetVersion | None
    ensemble: list[ResolvedModel]
    output: str


@dataclass
class RMResult:
    """A registered reward model and what its training measured."""

    name: str
    path: Path
    metrics: dict[str, Any]


@dataclass
class EnsembleReport:
    """What ensemble relabelling changed."""

    members: int = 0
    relabelled: int = 0
    moved_to_stage1: int = 0
    agreement_stage2: float | None = None  # share of decided stage-2 gold pairs the ensemble agrees with


def prepare_rm_training(config: RMConfig, registry: Registry, store: ModelStore) -> PreparedRM:
    """Resolve the backbone, datasets and ensemble members and check their kinds.

    Raises:
        ModelStoreError, RegistryError, RMConfigError: naming what is wrong.
    """
    model = store.resolve(config.model)
    if not model.has_tokenizer:
        raise RMConfigError(
            f"model {config.model!r} has no tokenizer (tokenizer_config.json) in {model.path}"
        )
    datasets = [registry.open(ref) for ref in config.datasets]
    for dataset in datasets:
        if dataset.kind != "rm_pairs":
            raise RMConfigError(
                f"datasets: {dataset.ref} is of kind {dataset.kind!r}; rm trains on 'rm_pairs'"
            )
    eval_dataset = registry.open(config.eval_dataset) if config.eval_dataset else None
    if eval_dataset is not None and eval_dataset.kind not in PAIR_KINDS:
        raise RMConfigError(
            f"eval_dataset: {eval_dataset.ref} is of kind {eval_dataset.kind!r}; need rm_pairs"
        )
    ensemble = [store.resolve(ref) for ref in config.ensemble]
    output = config.output or f"rm-{datasets[0].name}-{datetime.now(UTC):%Y%m%d%H%M%S}"
    if store.has(output):
        raise RMConfigError(f"output: a model named {output!r} is already stored")
    return PreparedRM(config, model, datasets, eval_dataset, ensemble, output)


def read_pairs(
    datasets: Sequence[DatasetVersion], config: RMConfig, limit: int | None = None
) -> tuple[list[RMPair], Counter[str]]:
    """Validated pairs of the datasets in order (the first `limit`), and the drops by reason."""
    pairs: list[RMPair] = []
    dropped: Counter[str] = Counter()
    for dataset in datasets:
        table = dataset.to_arrow()
        rows = table.slice(0, limit - len(pairs) if limit else None).to_pylist()
        kept, bad = validate_pairs(
            rows, source=dataset.ref, invalid=config.invalid_rows,
            gold_label=config.gold_label, tie_label=config.tie_label,
        )  # fmt: skip
        pairs += kept
        dropped += bad
        if limit and len(pairs) >= limit:
            break
    return pairs, dropped


def apply_ensemble(
    pairs: Sequence[RMPair], member_probs: Sequence[Sequence[float]], move_contradicted: bool = True
) -> tuple[list[RMPair], EnsembleReport]:
    """Relabel stage-1 pairs with the ensemble's mean probability; move contradicted gold pairs.

    Args:
        pairs: the pairs, each with its stage.
        member_probs: per member, sigma(r_chosen - r_rejected) of every pair.
        move_contradicted: move a stage-2 pair to stage 1 when its label says one side is better
            (label != 0.5) and the ensemble's mean says the other (on the other side of 0.5).

    Returns:
        The pairs with new labels and stages, and what changed.
    """
    report = EnsembleReport(members=len(member_probs))
    if not member_probs:
        return list(pairs), report
    for probs in member_probs:
        if len(probs) != len(pairs):
            raise ValueError(f"an ensemble member scored {len(probs)} pairs, not {len(pairs)}")
    mean = [sum(column) / len(member_probs) for column in zip(*member_probs, strict=True)]
    out: list[RMPair] = []
    agree = decided = 0
    for pair, p in zip(pairs, mean, strict=True):
        if pair.stage == 1:
            out.append(replace(pair, label=p))
            report.relabelled += 1
            continue
        if pair.label != 0.5:
            decided += 1
            contradicted = (pair.label > 0.5) != (p > 0.5)
            agree += not contradicted
            if contradicted and move_contradicted:
                out.append(replace(pair, label=p, stage=1))
                report.moved_to_stage1 += 1
                report.relabelled += 1
                continue
        out.append(pair)
    report.agreement_stage2 = agree / decided if decided else None
    return out, report


class PairObjective:
    """Soft-label Bradley–Terry loss over micro batches of packed rows (for trainer.loop)."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id
        self.real_tokens = 0
        self.slots = 0

    def units(self, items: Sequence[list[PackedRow]]) -> int:
        return sum(len(row.segments) for group in items for row in group)

    def loss_sum(self, model: Any, items: Sequence[list[PackedRow]]) -> Any:
        from reward_model.loss import bradley_terry_loss

        total = 0.0
        for group in items:
            batch = collate(group, self.pad_id)
            rewards = model(batch)
            total = total + bradley_terry_loss(rewards[0], rewards[1], batch.labels, batch.margins).sum()
            self.real_tokens += batch.real_tokens
            self.slots += batch.slots
        return total


def stage_rows(pairs: Sequence[TokenizedPair], config: RMConfig, packed: bool) -> list[PackedRow]:
    """Rows of a stage: packed towards the fill target, or one pair per row."""
    segments = pair_segments(pairs)
    return pack_segments(segments, config.capacity, config.fill_target) if packed else single_rows(segments)


def train_stage(
    model: Any,
    pairs: Sequence[TokenizedPair],
    stage: StageConfig,
    config: RMConfig,
    pad_id: int,
    *,
    packed: bool,
    log: Log = print,
    on_step: Callable[[StepReport], None] | None = None,
) -> dict[str, Any]:
    """Train one stage in place; return its metrics (losses, steps, fill, tokens per second)."""
    from trainer.loop import train

    rows = stage_rows(pairs, config, packed)
    # Rows of similar length share a micro batch (padded to its longest row); the loop shuffles
    # the micro batches, so the order of the data is still random.
    random.Random(config.seed).shuffle(rows)
    rows.sort(key=lambda row: row.length)
    groups = group_rows(rows, stage.micro_batch_pairs)
    # A group holds whole rows, so often more pairs than micro_batch_pairs: count the pairs a
    # group really holds, so that a step holds about pairs_per_step pairs.
    pairs_per_group = sum(len(row.segments) for row in rows) / len(groups)
    accumulation = max(1, round(stage.pairs_per_step / pairs_per_group))
    objective = PairObjective(pad_id)
    metrics = train(
        model, groups, objective, config.stage_loop(stage, accumulation), log=log, on_step=on_step
    )
    summary = metrics.summary()
    return {
        "pairs": len(pairs),
        "rows": len(rows),
        "pairs_per_row": [min(len(r.segments) for r in rows), max(len(r.segments) for r in rows)],
        "fill": round(objective.real_tokens / max(1, objective.slots), 4),
        "real_tokens": objective.real_tokens,
        "real_tokens_per_s": round(objective.real_tokens / max(1e-9, metrics.seconds), 2),
        "losses": [round(x, 5) for x in metrics.losses],
        **{k: v for k, v in summary.items() if k != "units"},
        "pairs_trained": summary["units"],
    }


def load_backbone(prepared: PreparedRM) -> tuple[Any, Any]:
    """The tokenizer and a fresh reward model on the configured backbone."""
    import torch
    from transformers import AutoTokenizer

    from reward_model.model import RewardModel

    config = prepared.config
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    load_kwargs = prepared.model.load_kwargs()
    tokenizer = AutoTokenizer.from_pretrained(prepared.model.path, **load_kwargs)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = RewardModel.from_backbone(
        prepared.model.path, pooling=config.pooling, seed=config.seed, load_kwargs=load_kwargs
    )
    model.hf.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, model


def pair_rewards(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[RMPair],
    config: RMConfig,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[Any, list[TokenizedPair], dict[str, Any]]:
    """Rewards [2, kept pairs] of pairs under one model, with the kept tokenized pairs.
    `on_batch` receives the number of pairs each forward pass scored (for progress)."""
    tokenized, counts = tokenize_pairs(tokenizer, pairs, config.max_length, config.truncation, config.margin)
    rewards = score_segments(
        model, pair_segments(tokenized), tokenizer.pad_token_id, capacity=config.capacity,
        batch_segments=config.score_batch_pairs, packing=config.packing, fill_target=config.fill_target,
        on_batch=on_batch,
    )  # fmt: skip
    return rewards, tokenized, counts.as_dict()


def evaluate_pairs(model: Any, tokenizer: Any, pairs: Sequence[RMPair], config: RMConfig) -> EvalReport:
    """Accuracy and calibration of `model` on pairs (too long ones follow `truncation`)."""
    rewards, tokenized, _ = pair_rewards(model, tokenizer, pairs, config)
    return evaluate_rewards(rewards[0], rewards[1], [p.label for p in tokenized])


def ensemble_probabilities(
    members: Sequence[ResolvedModel], pairs: Sequence[RMPair], config: RMConfig, log: Log
) -> list[list[float]]:
    """sigma(r_chosen - r_rejected) of every pair under each member (each with its own tokenizer).
    A pair a member cannot fit even after truncation gets 0.5 from it."""
    import torch
    from transformers import AutoTokenizer

    from reward_model.model import RewardModel

    out = []
    for member in members:
        started = time.monotonic()
        model = RewardModel.load(member.path)
        tokenizer = AutoTokenizer.from_pretrained(member.path)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        rewards, tokenized, _ = pair_rewards(model, tokenizer, pairs, config)
        probs = [0.5] * len(pairs)
        for column, pair in enumerate(tokenized):
            probs[pair.index] = float(torch.sigmoid(rewards[0, column] - rewards[1, column]))
        out.append(probs)
        log(f"ensemble member {member.ref}: scored {len(pairs)} pairs in {time.monotonic() - started:.1f} s")
        del model
    return out


def run_rm_training(
    prepared: PreparedRM,
    store: ModelStore,
    *,
    log: Log = print,
    on_step: Callable[[int, StepReport], None] | None = None,
) -> RMResult:
    """Relabel, train both stages, evaluate, save and register the reward model."""
    config = prepared.config
    started = time.monotonic()
    pairs, dropped = read_pairs(prepared.datasets, config, config.limit_pairs)
    if dropped:
        log(f"dropped invalid pairs: {dict(dropped)}")
    if not pairs:
        raise RMConfigError(f"datasets {', '.join(config.datasets)} have no valid pairs")
    pairs, ensemble = apply_ensemble(
        pairs, ensemble_probabilities(prepared.ensemble, pairs, config, log), config.move_contradicted
    )
    if ensemble.members:
        log(
            f"ensemble of {ensemble.members}: relabelled {ensemble.relabelled} pairs, "
            f"moved {ensemble.moved_to_stage1} contradicted gold pairs to stage 1"
        )
    eval_pairs: list[RMPair] = []
    if prepared.eval_dataset is not None:
        lenient = config.model_copy(update={"invalid_rows": "drop"})
        eval_pairs, _ = read_pairs([prepared.eval_dataset], lenient, config.eval_limit)
    tokenizer, model = load_backbone(prepared)
    packed = config.packing and model.pooling == "last"
    if config.packing and not packed:
        log("packing is off: encoder reward models take one sample per row")
    if config.gradient_checkpointing:
        model.hf.gradient_checkpointing_enable()
    metrics: dict[str, Any] = {"invalid_dropped": dict(dropped), "ensemble": ensemble.__dict__}
    if eval_pairs and config.eval_before:
        metrics["eval_before"] = evaluate_pairs(model, tokenizer, eval_pairs, config).summary()
        log(f"before training: {metrics['eval_before']}")
    for number, stage in ((1, config.stage1), (2, config.stage2)):
        stage_pairs = [p for p in pairs if p.stage == number]
        tokenized, counts = tokenize_pairs(
            tokenizer, stage_pairs, config.max_length, config.truncation, config.margin
        )
        metrics[f"stage{number}_data"] = counts.as_dict()
        if counts.truncated or counts.dropped:
            log(f"stage {number}: {counts.truncated} pairs had their prompt cut from the left to fit "
                f"{config.max_length} tokens; dropped {dict(counts.dropped) or 'none'}")  # fmt: skip
        if not tokenized:
            log(f"stage {number}: no pairs, skipped")
            continue
        log(f"stage {number}: {len(tokenized)} pairs, peak lr {stage.learning_rate:g}")
        metrics[f"stage{number}"] = train_stage(
            model, tokenized, stage, config, tokenizer.pad_token_id, packed=packed,
            log=lambda line, n=number: log(f"stage {n}: {line}"),
            on_step=(lambda report, n=number: on_step(n, report)) if on_step else None,
        )  # fmt: skip
    if eval_pairs:
        report = evaluate_pairs(model, tokenizer, eval_pairs, config)
        metrics["eval"] = report.summary() | {"dataset": prepared.eval_dataset.ref}  # type: ignore[union-attr]
        log(f"after training: {metrics['eval']}")
    metrics["wall_s"] = round(time.monotonic() - started, 2)
    metrics["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    store.root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=store.root) as scratch:
        out = Path(scratch) / "checkpoint"
        model.save(out, tokenizer, {"max_length": config.max_length})
        lineage = ModelLineage(
            base_model=prepared.model.identity,
            datasets=[dataset.ref for dataset in prepared.datasets],
            config=config.model_dump(mode="json"),
            metrics=metrics | {"ensemble_models": [m.identity for m in prepared.ensemble]},
        )
        path = store.register(prepared.output, out, kind="reward_model", lineage=lineage)
    return RMResult(prepared.output, path, metrics)
