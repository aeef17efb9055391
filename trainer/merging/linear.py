"""Linear merging, streamed tensor by tensor (and chunk by chunk) from safetensors.

    theta_merged = sum_i w_i * theta_i,   sum_i w_i = 1

`plan_linear` checks everything before any output exists: same architecture, same tensor names,
shapes and dtypes, a tokenizer in the first model, weights that sum to 1 (or `normalize`).
`execute_linear` then reads each tensor of each model in fixed-size chunks into reused buffers,
accumulates the weighted sum in float64 (terms can cancel, and a float32 sum would then be off
by more than even a bfloat16 output's rounding), casts it to the output dtype and streams it to
the output file, so peak memory is a few chunk buffers whatever the number or size of models.
Special-token embeddings are rows of the embedding matrix and are merged like any other weight
(Command A report, section 3.4.3.2).

The arithmetic runs in numpy, with bfloat16 handled bit-wise, so a merge does not import torch.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from model_store import META_FILE
from trainer.merging.config import MergeError, check_weights
from trainer.merging.safetensors_io import (
    FLOAT_DTYPES,
    ITEMSIZE,
    Checkpoint,
    SafetensorsFormatError,
    ShardedWriter,
    TensorSpec,
)

CHUNK_ELEMENTS = 1 << 18  # 256k elements: the working buffers stay in the CPU's L2/L3 caches
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model", "vocab.txt")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".msgpack", ".h5", ".ckpt")
DTYPE_NAMES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64"}
NUMPY_FLOAT = {"F32": np.float32, "F64": np.float64, "F16": np.float16}  # BF16 goes through uint16

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class TensorPlan:
    """One output tensor: input dtype and shape, output dtype, and whether it is merged or copied."""

    name: str
    shape: tuple[int, ...]
    in_dtype: str
    out_dtype: str

    @property
    def merged(self) -> bool:
        return self.in_dtype in FLOAT_DTYPES


@dataclass(frozen=True)
class LinearMergePlan:
    """A validated linear merge: inputs, final weights, per-tensor dtypes, the output config."""

    models: tuple[Path, ...]
    weights: tuple[float, ...]
    tensors: tuple[TensorPlan, ...]
    config: dict[str, Any]
    accumulate: str = "float64"
    max_shard_size: int = 5 * 10**9

    def with_weights(self, weights: Sequence[float], normalize: bool = False) -> LinearMergePlan:
        """The same validated merge with other weights (for searches: no re-validation)."""
        return replace(self, weights=_final_weights(weights, len(self.models), normalize))

    @property
    def total_bytes(self) -> int:
        return sum(math.prod(t.shape) * ITEMSIZE[t.out_dtype] for t in self.tensors)


@dataclass(frozen=True)
class MergeResult:
    """Where a merge landed and what it cost."""

    path: Path
    weights: tuple[float, ...]
    seconds: float
    bytes_written: int


def _final_weights(weights: Sequence[float], count: int, normalize: bool) -> tuple[float, ...]:
    if len(weights) != count:
        raise MergeError(f"{len(weights)} weights for {count} models")
    values = [float(w) for w in weights]
    if not all(math.isfinite(w) for w in values):
        raise MergeError(f"weights {values} are not all finite numbers")
    try:
        check_weights(values, normalize)
    except ValueError as err:
        raise MergeError(str(err)) from err
    if normalize:
        total = math.fsum(values)
        values = [w / total for w in values]
    return tuple(values)


def _read_config(folder: Path) -> dict[str, Any]:
    if not folder.is_dir():
        raise MergeError(f"{folder}: no such model folder")
    try:
        config = json.loads((folder / "config.json").read_text())
    except FileNotFoundError as err:
        raise MergeError(f"{folder}: no config.json (not an HF model folder)") from err
    except json.JSONDecodeError as err:
        raise MergeError(f"{folder}/config.json: not valid JSON ({err})") from err
    return config


def _architecture(config: dict[str, Any]) -> tuple[Any, Any]:
    return config.get("model_type"), config.get("architectures")


def plan_linear(
    models: Sequence[Path],
    weights: Sequence[float],
    *,
    normalize: bool = False,
    dtype: str | None = None,
    accumulate: str = "float64",
    max_shard_size: int = 5 * 10**9,
) -> LinearMergePlan:
    """Validate a linear merge before any work: architectures, tensors, tokenizer, weights.

    Args:
        models: HF folders with safetensors weights; config and tokenizer come from the first.
        weights: one per model; they must sum to 1 within 1e-6 unless `normalize`.
        normalize: divide the weights by their sum instead of requiring 1.
        dtype: output dtype of float tensors (float32, float16, bfloat16, float64); default: inputs'.
        accumulate: float64 or float32: the dtype the weighted sum is computed in.
        max_shard_size: largest output safetensors file in bytes.

    Raises:
        MergeError: on any mismatch, naming the models and tensors concerned.
    """
    folders = tuple(Path(m) for m in models)
    if not folders:
        raise MergeError("a merge needs at least one model")
    final = _final_weights(weights, len(folders), normalize)
    if dtype is not None and dtype not in DTYPE_NAMES:
        raise MergeError(f"dtype {dtype!r} is not one of {sorted(DTYPE_NAMES)}")
    if accumulate not in ("float32", "float64"):
        raise MergeError(f"accumulate {accumulate!r} is not float64 or float32")
    configs = [_read_config(folder) for folder in folders]
    for folder, config in zip(folders[1:], configs[1:], strict=True):
        if _architecture(config) != _architecture(configs[0]):
            raise MergeError(
                f"different architectures: {folders[0]} is {_architecture(configs[0])}, "
                f"{folder} is {_architecture(config)}"
            )
    if not any((folders[0] / name).is_file() for name in TOKENIZER_FILES):
        raise MergeError(
            f"{folders[0]}: no tokenizer (none of {', '.join(TOKENIZER_FILES)}); the merged model "
            "takes its tokenizer from the first model"
        )
    try:
        checkpoints = [Checkpoint(folder) for folder in folders]
    except SafetensorsFormatError as err:
        raise MergeError(str(err)) from err
    try:
        tensors = _plan_tensors(checkpoints, dtype)
    finally:
        for checkpoint in checkpoints:
            checkpoint.close()
    config = dict(configs[0])
    if dtype is not None:  # transformers 5 reads `dtype`; older releases wrote `torch_dtype`
        config["dtype"] = dtype
        if "torch_dtype" in config:
            config["torch_dtype"] = dtype
    return LinearMergePlan(folders, final, tensors, config, accumulate, int(max_shard_size))


def _plan_tensors(checkpoints: list[Checkpoint], dtype: str | None) -> tuple[TensorPlan, ...]:
    first = checkpoints[0]
    for other in checkpoints[1:]:
        missing = sorted(set(first.tensors) - set(other.tensors))
        extra = sorted(set(other.tensors) - set(first.tensors))
        if missing or extra:
            raise MergeError(
                f"{other.folder} has different tensors from {first.folder}: "
                f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                f"extra {extra[:5]}{'...' if len(extra) > 5 else ''}"
            )
    plans = []
    for name, info in first.tensors.items():
        for other in checkpoints[1:]:
            theirs = other.tensors[name]
            if theirs.shape != info.shape or theirs.dtype != info.dtype:
                raise MergeError(
                    f"tensor {name!r}: {first.folder} has {info.dtype}{list(info.shape)}, "
                    f"{other.folder} has {theirs.dtype}{list(theirs.shape)}"
                )
        if info.dtype in FLOAT_DTYPES:
            plans.append(
                TensorPlan(name, info.shape, info.dtype, DTYPE_NAMES[dtype] if dtype else info.dtype)
            )
            continue
        if info.dtype.startswith("F8"):
            raise MergeError(f"tensor {name!r} is {info.dtype}: dequantise float8 checkpoints before merging")
        # Integer and bool tensors (buffers, masks) cannot be averaged: they must agree, and are copied.
        reference = first.read_bytes(name)
        for other in checkpoints[1:]:
            if not np.array_equal(reference, other.read_bytes(name)):
                raise MergeError(f"non-float tensor {name!r} ({info.dtype}) differs between models")
        plans.append(TensorPlan(name, info.shape, info.dtype, info.dtype))
    return tuple(plans)


class _Buffers:
    """Reused chunk buffers, so memory stays a few chunks whatever the model size."""

    def __init__(self, elements: int) -> None:
        self.raw = np.empty(elements * 8, dtype=np.uint8)
        self.u32 = np.empty(elements, dtype=np.uint32)
        self.u32b = np.empty(elements, dtype=np.uint32)
        self.acc = {np.dtype(t): np.empty(elements, dtype=t) for t in (np.float32, np.float64)}
        self.tmp = {np.dtype(t): np.empty(elements, dtype=t) for t in (np.float32, np.float64)}
        self.out = np.empty(elements * 8, dtype=np.uint8)


def _to_float(raw: np.ndarray, dtype: str, count: int, buffers: _Buffers) -> np.ndarray:
    """View `count` elements of raw bytes as a numpy float array (bfloat16 widened to float32)."""
    if dtype == "BF16":
        bits = buffers.u32[:count]
        np.copyto(bits, raw[: 2 * count].view(np.uint16))
        np.left_shift(bits, 16, out=bits)  # bf16 is the top half of a float32
        return bits.view(np.float32)
    return raw[: count * ITEMSIZE[dtype]].view(NUMPY_FLOAT[dtype])


def _to_bfloat16(values: np.ndarray, buffers: _Buffers) -> np.ndarray:
    """Round float32 values to bfloat16 bit patterns, to nearest even, as torch does."""
    count = values.size
    bits = values.view(np.uint32)
    rounded = buffers.u32b[:count]
    np.right_shift(bits, 16, out=rounded)
    np.bitwise_and(rounded, 1, out=rounded)
    np.add(rounded, 0x7FFF, out=rounded)
    np.add(rounded, bits, out=rounded)
    np.right_shift(rounded, 16, out=rounded)
    out = buffers.out[: 2 * count].view(np.uint16)
    np.copyto(out, rounded, casting="unsafe")
    nan = np.isnan(values)
    if nan.any():  # keep NaNs NaN (quiet) rather than letting rounding carry into the exponent
        out[nan] = (bits[nan] >> 16).astype(np.uint16) | 0x0040
    return out


def _from_accumulator(acc: np.ndarray, dtype: str, buffers: _Buffers) -> np.ndarray:
    """Cast the accumulated chunk to the output dtype (in a reused buffer)."""
    if dtype == "BF16":
        if acc.dtype != np.float32:
            narrowed = buffers.tmp[np.dtype(np.float32)][: acc.size]
            np.copyto(narrowed, acc, casting="same_kind")
            acc = narrowed
        return _to_bfloat16(acc, buffers)
    target = NUMPY_FLOAT[dtype]
    if acc.dtype == target:
        return acc
    out = buffers.out[: acc.size * ITEMSIZE[dtype]].view(target)
    np.copyto(out, acc, casting="same_kind")
    return out


def _merge_tensor(
    plan: LinearMergePlan,
    tensor: TensorPlan,
    checkpoints: list[Checkpoint],
    writer: ShardedWriter,
    buffers: _Buffers,
    chunk: int,
) -> None:
    total = math.prod(tensor.shape)
    if not tensor.merged:  # identical in every model (checked by the plan): copy the first
        writer.write(tensor.name, checkpoints[0].read_bytes(tensor.name))
        return
    if total == 0:
        writer.write(tensor.name, b"")
        return
    acc_type = np.float64 if plan.accumulate == "float64" else np.float32
    # Zero-weight models contribute nothing: skip their reads (this also keeps (1, 0) exact).
    terms = [(c, acc_type(w)) for c, w in zip(checkpoints, plan.weights, strict=True) if w != 0.0]
    itemsize = ITEMSIZE[tensor.in_dtype]
    for start in range(0, total, chunk):
        count = min(chunk, total - start)
        acc = buffers.acc[np.dtype(acc_type)][:count]
        tmp = buffers.tmp[np.dtype(acc_type)][:count]
        if not terms:
            acc.fill(0)
        for index, (checkpoint, weight) in enumerate(terms):
            raw = buffers.raw[: count * itemsize]
            checkpoint.read_into(tensor.name, raw, start * itemsize)
            values = _to_float(raw, tensor.in_dtype, count, buffers)
            if index == 0:
                np.multiply(values, weight, out=acc)
            else:
                np.multiply(values, weight, out=tmp)
                np.add(acc, tmp, out=acc)
        writer.write(tensor.name, _from_accumulator(acc, tensor.out_dtype, buffers))


def _copy_side_files(source: Path, target: Path, config: dict[str, Any]) -> None:
    """Config (with the output dtype), generation config, tokenizer and other small files."""
    (target / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    for file in sorted(source.iterdir()):
        if not file.is_file() or file.name in ("config.json", META_FILE) or file.name.endswith(".index.json"):
            continue
        if file.suffix in WEIGHT_SUFFIXES:
            continue
        shutil.copyfile(file, target / file.name)


def execute_linear(
    plan: LinearMergePlan,
    out_dir: Path,
    *,
    progress: Progress | None = None,
    chunk_elements: int = CHUNK_ELEMENTS,
) -> MergeResult:
    """Run a planned merge into `out_dir` (which must not exist); it appears whole or not at all.

    The output is written into a hidden sibling folder and renamed when complete, so a failure
    leaves nothing behind.
    """
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise MergeError(f"output folder {out_dir} already exists")
    started = time.perf_counter()
    staging = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    checkpoints = [Checkpoint(folder) for folder in plan.models]
    total = plan.total_bytes
    done = 0
    try:
        buffers = _Buffers(chunk_elements)
        specs = [TensorSpec(t.name, t.out_dtype, t.shape) for t in plan.tensors]
        by_name = {t.name: t for t in plan.tensors}
        with ShardedWriter(staging, specs, plan.max_shard_size, {"format": "pt"}) as writer:
            for spec in writer.order:
                _merge_tensor(plan, by_name[spec.name], checkpoints, writer, buffers, chunk_elements)
                done += spec.nbytes
                if progress is not None:
                    progress(done, total)
        _copy_side_files(plan.models[0], staging, plan.config)
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        for checkpoint in checkpoints:
            checkpoint.close()
    return MergeResult(out_dir, plan.weights, time.perf_counter() - started, total)


def merge_linear(
    models: Sequence[Path],
    weights: Sequence[float],
    out_dir: Path,
    *,
    normalize: bool = False,
    dtype: str | None = None,
    accumulate: str = "float64",
    max_shard_size: int = 5 * 10**9,
    progress: Progress | None = None,
) -> MergeResult:
    """Validate, then write `sum_i weights[i] * models[i]` as an HF folder at `out_dir`.

    See `plan_linear` for the arguments and the checks; raises MergeError before writing anything.
    """
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise MergeError(f"output folder {out_dir} already exists")
    plan = plan_linear(
        models,
        weights,
        normalize=normalize,
        dtype=dtype,
        accumulate=accumulate,
        max_shard_size=max_shard_size,
    )
    return execute_linear(plan, out_dir, progress=progress)
