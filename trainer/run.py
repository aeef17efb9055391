"""Train an expert from a registered dataset and register the checkpoint with its lineage.

Everything that can be wrong with the inputs (model, dataset, kind, tokenizer) is checked
before a model loads. One worker trains in this process; more run the same loop under Ray
Train's TorchTrainer with DDP.
"""

from __future__ import annotations

import math
import pickle
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from datasets_registry import DatasetVersion, Registry
from model_store import ModelLineage, ModelStore, ResolvedModel
from trainer.config import TrainConfig, TrainConfigError
from trainer.data import as_row, pack, tokenize_completion, tokenize_conversation
from trainer.loop import StepReport, TrainMetrics, train
from trainer.objectives import PreferenceItem, PreferenceObjective, SFTObjective


@dataclass
class TrainResult:
    """A registered checkpoint and what its training measured."""

    name: str
    path: Path
    metrics: dict[str, Any]


@dataclass
class PreparedTraining:
    """Checked inputs: nothing has loaded a model yet."""

    config: TrainConfig
    model: ResolvedModel
    dataset: DatasetVersion
    output: str


def prepare_training(config: TrainConfig, registry: Registry, store: ModelStore) -> PreparedTraining:
    """Resolve the base model and the dataset, and check the dataset's kind fits the method.

    Raises:
        ModelStoreError, RegistryError, TrainConfigError: naming what is wrong.
    """
    model = store.resolve(config.model)
    if not model.has_tokenizer:
        raise TrainConfigError(
            f"model {config.model!r} has no tokenizer (tokenizer_config.json) in {model.path}"
        )
    dataset = registry.open(config.dataset)
    expected = "preference" if config.is_preference else "sft"
    if dataset.kind != expected:
        raise TrainConfigError(
            f"dataset {dataset.ref} is of kind {dataset.kind!r}; {config.method} trains on kind {expected!r}"
        )
    output = config.output or f"{config.method}-{dataset.name}-{datetime.now(UTC):%Y%m%d%H%M%S}"
    if store.has(output):
        raise TrainConfigError(f"output: a model named {output!r} is already stored")
    return PreparedTraining(config, model, dataset, output)


def build_items(config: TrainConfig, tokenizer: Any, dataset: DatasetVersion) -> list[Any]:
    """Tokenize the dataset: packed rows for SFT, pairs for preference training."""
    if not config.is_preference:
        rows = dataset.to_arrow(columns=["messages"])["messages"].to_pylist()
        samples = [tokenize_conversation(tokenizer, messages, config.max_length) for messages in rows]
        samples = [s for s in samples if s.n_targets > 0]
        return pack(samples, config.max_length) if config.packing else [as_row(s) for s in samples]
    columns = ["prompt", "chosen", "rejected"]
    if config.reward_fields is not None:
        columns.append("scores")
    table = dataset.to_arrow(columns=columns).to_pylist()
    items = []
    for row in table:
        item = PreferenceItem(
            tokenize_completion(tokenizer, row["prompt"], row["chosen"], config.max_length),
            tokenize_completion(tokenizer, row["prompt"], row["rejected"], config.max_length),
        )
        if config.reward_fields is not None:
            scores = row["scores"] or {}
            item.reward_chosen, item.reward_rejected = (float(scores[f]) for f in config.reward_fields)
        items.append(item)
    return items


def _load(path: Path, config: TrainConfig, load_kwargs: dict[str, Any]) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    torch.manual_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(path, **load_kwargs)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **load_kwargs)
    model.hf_quantizer = None  # GGUF weights are dequantized on load
    return tokenizer, model


def _objective(config: TrainConfig, pad_id: int) -> SFTObjective | PreferenceObjective:
    return PreferenceObjective(config, pad_id) if config.is_preference else SFTObjective(pad_id)


def _train_shard(
    config: TrainConfig,
    model: Any,
    tokenizer: Any,
    items: list[Any],
    log: Callable[[str], None],
    on_step: Callable[[StepReport], None] | None = None,
) -> TrainMetrics:
    objective = _objective(config, tokenizer.pad_token_id)
    if isinstance(objective, PreferenceObjective):
        objective.fill_reference(model, items)
    return train(model, items, objective, config.loop, log=log, on_step=on_step)


def run_training(
    prepared: PreparedTraining,
    store: ModelStore,
    *,
    log: Callable[[str], None] = print,
    on_step: Callable[[StepReport], None] | None = None,
) -> TrainResult:
    """Train, save an HF folder (safetensors), and register it with lineage.

    Args:
        on_step: receives every optimizer step's report (single-process runs; Ray workers log).
    """
    config = prepared.config
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=_scratch(store)) as scratch:
        out = Path(scratch) / "checkpoint"
        tokenizer, model = _load(prepared.model.path, config, prepared.model.load_kwargs())
        items = build_items(config, tokenizer, prepared.dataset)
        if not items:
            raise TrainConfigError(f"dataset {prepared.dataset.ref} has no trainable rows")
        what = "pairs" if config.is_preference else ("packed sequences" if config.packing else "rows")
        dataset = prepared.dataset
        log(f"training {config.method} on {len(items)} {what} of {dataset.ref} ({dataset.num_rows} rows)")
        if config.num_workers == 1:
            metrics = _train_shard(config, model, tokenizer, items, log, on_step)
            model.save_pretrained(out)
            tokenizer.save_pretrained(out)
        else:
            del model
            metrics = _train_with_ray(prepared, items, out, Path(scratch))
        summary = metrics.summary() | {"wall_s": round(time.monotonic() - started, 2)}
        lineage = ModelLineage(
            base_model=prepared.model.identity,
            datasets=[prepared.dataset.ref],
            config=config.model_dump(mode="json"),
            metrics=summary,
        )
        path = store.register(prepared.output, out, kind=config.method, lineage=lineage)
    return TrainResult(prepared.output, path, summary)


def _scratch(store: ModelStore) -> Path:
    """Scratch space beside the store, so registering is a rename on one file system."""
    store.root.mkdir(parents=True, exist_ok=True)
    return store.root


def _train_with_ray(prepared: PreparedTraining, items: list[Any], out: Path, scratch: Path) -> TrainMetrics:
    """Run the same loop on `num_workers` Ray Train workers with DDP; rank 0 saves."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    config = prepared.config
    items_file = scratch / "items.pkl"
    items_file.write_bytes(pickle.dumps(items))
    if not ray.is_initialized():
        ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    trainer = TorchTrainer(
        _ray_worker,
        train_loop_config={
            "config": config.model_dump(mode="json"),
            "model_path": str(prepared.model.path),
            "load_kwargs": prepared.model.load_kwargs(),
            "items_file": str(items_file),
            "out": str(out),
            "metrics_file": str(scratch / "metrics.pkl"),
        },
        scaling_config=ScalingConfig(
            num_workers=config.num_workers, use_gpu=config.use_gpu, resources_per_worker={"CPU": 1}
        ),
        run_config=RunConfig(storage_path=str(scratch / "ray"), name="train"),
    )
    trainer.fit()
    return pickle.loads((scratch / "metrics.pkl").read_bytes())


def _ray_worker(worker_args: dict[str, Any]) -> None:
    """One Ray Train worker: its shard of the items, the shared loop, DDP gradients."""
    import ray.train
    import ray.train.torch

    config = TrainConfig.model_validate(worker_args["config"])
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    tokenizer, model = _load(Path(worker_args["model_path"]), config, worker_args["load_kwargs"])
    everything = pickle.loads(Path(worker_args["items_file"]).read_bytes())
    # Equal shards (cycling the short ones), so every worker takes the same number of steps.
    shard = everything[rank::world]
    items = [shard[i % len(shard)] for i in range(math.ceil(len(everything) / world))]
    objective = _objective(config, tokenizer.pad_token_id)
    if isinstance(objective, PreferenceObjective):
        objective.fill_reference(model, items)  # before wrapping: the reference is the base model
    ddp_model = ray.train.torch.prepare_model(model, move_to_device=config.use_gpu)
    metrics = train(ddp_model, items, objective, config.loop, log=print if rank == 0 else lambda _: None)
    if rank == 0:
        model.save_pretrained(worker_args["out"])
        tokenizer.save_pretrained(worker_args["out"])
        Path(worker_args["metrics_file"]).write_bytes(pickle.dumps(metrics))
    ray.train.report({"steps": metrics.steps, "last_loss": metrics.losses[-1] if metrics.losses else 0.0})
