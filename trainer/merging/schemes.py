"""Merge schemes on top of linear merging, and running a MergeConfig into the model store.

Every scheme is a linear merge with particular weights (Command A report, section 3.4.2):

- seed merging: K runs of one recipe with different seeds, uniform weights 1/K;
- leave-one-out: K merges, the i-th without model i, the others' weights rescaled to sum to 1
  (w_j / (1 - w_i)), to reveal an expert that degrades the others (section 3.4.3.2);
- interpolation (WARP-style capability recovery): (1 - alpha) * base + alpha * model.

Because a linear merge of linear merges is itself a linear merge, schemes compose: the weights
of the flattened merge are the products of the weights along each path.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_store import ModelLineage, ModelStore, ResolvedModel
from trainer.merging.config import MergeConfig, MergeError
from trainer.merging.linear import LinearMergePlan, MergeResult, Progress, execute_linear, plan_linear


def seed_weights(count: int) -> list[float]:
    """Uniform weights 1/K for seed merging."""
    if count < 1:
        raise MergeError("seed merging needs at least one model")
    return [1.0 / count] * count


def leave_one_out_weights(weights: Sequence[float]) -> list[list[float]]:
    """For each i, the weights without model i, rescaled to sum to 1: w_j / (1 - w_i), j != i."""
    if len(weights) < 2:
        raise MergeError("leave-one-out needs at least two models")
    total = math.fsum(weights)
    merges = []
    for left_out, weight in enumerate(weights):
        rest = total - weight
        if abs(rest) < 1e-9:
            raise MergeError(f"without model {left_out} the remaining weights sum to 0")
        merges.append([w / rest for i, w in enumerate(weights) if i != left_out])
    return merges


def _leave_one_out(weights: Sequence[float] | None, count: int) -> list[list[float]]:
    """Rescaled weights without each model; without weights, exactly uniform over the rest."""
    if weights is not None:
        return leave_one_out_weights(weights)
    if count < 2:
        raise MergeError("leave-one-out needs at least two models")
    return [seed_weights(count - 1) for _ in range(count)]


def interpolation_weights(alpha: float) -> list[float]:
    """[1 - alpha, alpha]: the weights of (base, model) in an interpolation."""
    if not 0.0 <= alpha <= 1.0:
        raise MergeError(f"alpha {alpha} is outside [0, 1]")
    return [1.0 - alpha, alpha]


def seed_merge(models: Sequence[Path], out_dir: Path, **options: Any) -> MergeResult:
    """Uniformly merge K checkpoints of one recipe trained with different seeds."""
    plan = plan_linear(models, seed_weights(len(models)), **options)
    return execute_linear(plan, out_dir)


def leave_one_out_merges(
    models: Sequence[Path], out_root: Path, weights: Sequence[float] | None = None, **options: Any
) -> list[MergeResult]:
    """K merges into `out_root/without-{i}`, each leaving out model i; all validated first."""
    plans = []
    for left_out, rest in enumerate(_leave_one_out(weights, len(models))):
        kept = [m for i, m in enumerate(models) if i != left_out]
        plans.append(plan_linear(kept, rest, **options))
    return [execute_linear(plan, Path(out_root) / f"without-{i}") for i, plan in enumerate(plans)]


def interpolate(base: Path, model: Path, alpha: float, out_dir: Path, **options: Any) -> MergeResult:
    """(1 - alpha) * base + alpha * model: alpha 0 is the base, 1 the model (WARP-style recovery)."""
    plan = plan_linear([base, model], interpolation_weights(alpha), **options)
    return execute_linear(plan, out_dir)


@dataclass(frozen=True)
class MergeJob:
    """One merge a config asks for: its store name, inputs and final weights."""

    name: str
    method: str
    models: tuple[ResolvedModel, ...]
    weights: tuple[float, ...]
    left_out: ResolvedModel | None = None


def plan_jobs(config: MergeConfig, store: ModelStore) -> list[MergeJob]:
    """Resolve a config's models and turn its method into linear merges (no files read yet)."""
    resolved = [_resolve(store, entry.model) for entry in config.models]
    name = config.output_name()
    if config.method == "linear":
        return [MergeJob(name, "linear", tuple(resolved), tuple(m.weight or 0.0 for m in config.models))]
    if config.method == "seed":
        return [MergeJob(name, "seed", tuple(resolved), tuple(seed_weights(len(resolved))))]
    if config.method == "interpolate":
        assert config.base is not None  # checked by the config
        models = (_resolve(store, config.base), resolved[0])
        return [MergeJob(name, "interpolate", models, tuple(interpolation_weights(config.alpha)))]
    given = [m.weight for m in config.models]
    weights = [w for w in given if w is not None] if all(w is not None for w in given) else None
    jobs = []
    for left_out, rest in enumerate(_leave_one_out(weights, len(resolved))):
        kept = tuple(m for i, m in enumerate(resolved) if i != left_out)
        jobs.append(
            MergeJob(f"{name}-without-{left_out}", "leave_one_out", kept, tuple(rest), resolved[left_out])
        )
    return jobs


def _resolve(store: ModelStore, ref: str) -> ResolvedModel:
    model = store.resolve(ref)
    if model.gguf_file:
        raise MergeError(f"{ref}: GGUF files cannot be merged; store the model as safetensors first")
    return model


@dataclass(frozen=True)
class RegisteredMerge:
    """A merge written and registered in the model store."""

    name: str
    path: Path
    weights: tuple[float, ...]
    seconds: float


def prepare_merges(config: MergeConfig, store: ModelStore) -> list[tuple[MergeJob, LinearMergePlan]]:
    """Resolve and validate every merge a config asks for; nothing is written.

    Checks model resolution, architectures, tensor names/shapes/dtypes, the tokenizer, the
    weights and that every output name is free in the store.
    """
    jobs = plan_jobs(config, store)
    for job in jobs:
        if store.path(job.name).exists():
            raise MergeError(f"a model named {job.name!r} is already stored; choose another `output`")
    normalize = config.normalize and config.method == "linear"  # other methods set exact weights
    return [
        (
            job,
            plan_linear(
                [m.path for m in job.models],
                job.weights,
                normalize=normalize,
                dtype=config.dtype,
                accumulate=config.accumulate,
                max_shard_size=int(config.max_shard_size),
            ),
        )
        for job in jobs
    ]


def run_merge(
    config: MergeConfig,
    store: ModelStore,
    *,
    progress: Progress | None = None,
    on_job: Callable[[MergeJob], None] | None = None,
) -> list[RegisteredMerge]:
    """Validate every merge a config asks for, then write each and register it with lineage.

    All checks run before the first merge starts (see `prepare_merges`), so a bad config writes
    nothing.

    Args:
        config: the merge config.
        store: the model store that resolves inputs and receives the outputs.
        progress: called with (bytes done, bytes total) while each merge runs.
        on_job: called with each MergeJob before it runs (for the CLI's progress display).
    """
    registered = []
    for job, plan in prepare_merges(config, store):
        if on_job is not None:
            on_job(job)
        registered.append(register_merge(store, job, plan, config.model_dump(mode="json"), progress=progress))
    return registered


def merge_linear_to_store(
    store: ModelStore,
    models: Sequence[str],
    weights: Sequence[float],
    *,
    name: str,
    normalize: bool = False,
    dtype: str | None = None,
) -> str:
    """Linear-merge stored models (or HF folders) into the store as `name`; return the name.

    The same checks and lineage as `assay merge` with `method: linear`.
    """
    config = MergeConfig(
        method="linear",
        models=[{"model": str(m), "weight": w} for m, w in zip(models, weights, strict=True)],
        normalize=normalize,
        dtype=dtype,
        output=name,
    )
    (merged,) = run_merge(config, store)
    return merged.name


def register_merge(
    store: ModelStore,
    job: MergeJob,
    plan: LinearMergePlan,
    config: dict[str, Any],
    *,
    progress: Progress | None = None,
    metrics: dict[str, Any] | None = None,
) -> RegisteredMerge:
    """Run one planned merge beside the store and move it in with lineage {method, models, weights}."""
    staging = store.root / f".{job.name}.merge-{os.getpid()}"
    store.root.mkdir(parents=True, exist_ok=True)
    result = execute_linear(plan, staging, progress=progress)
    return register_folder(store, job, result, config, metrics=metrics)


def _input_datasets(store: ModelStore, models: Sequence[ResolvedModel]) -> list[str]:
    """The datasets the stored input models were trained on, in order, each once: a merge is
    trained on what its inputs were (`assay models show --tree` walks the full tree)."""
    datasets: list[str] = []
    for model in models:
        if store.has(model.ref):
            for ref in store.record(model.ref).get("lineage", {}).get("datasets", []):
                if ref not in datasets:
                    datasets.append(ref)
    return datasets


def register_folder(
    store: ModelStore,
    job: MergeJob,
    result: MergeResult,
    config: dict[str, Any],
    *,
    metrics: dict[str, Any] | None = None,
) -> RegisteredMerge:
    """Register a finished merge folder under `job.name`; the folder is removed if that fails."""
    merge: dict[str, Any] = {
        "method": job.method,
        "models": [m.identity for m in job.models],
        "weights": list(result.weights),
    }
    if job.left_out is not None:
        merge["left_out"] = job.left_out.identity
    lineage = ModelLineage(
        base_model=job.models[0].identity if job.method == "interpolate" else None,
        datasets=_input_datasets(store, job.models),
        config=config,
        metrics={"merge_seconds": round(result.seconds, 3), "bytes": result.bytes_written, **(metrics or {})},
        merge=merge,
    )
    try:
        path = store.register(job.name, result.path, kind="merge", lineage=lineage)
    except BaseException:
        shutil.rmtree(result.path, ignore_errors=True)
        raise
    return RegisteredMerge(job.name, path, result.weights, result.seconds)
