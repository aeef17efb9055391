"""Streaming safetensors I/O: read tensors in byte ranges across shards, write without buffering.

The safetensors format is an 8-byte little-endian header length, a JSON header mapping each
tensor name to `{dtype, shape, data_offsets}` (offsets relative to the end of the header), then
the tensors' bytes back to back. Because the header only needs shapes and dtypes, a writer can
emit it first and then stream each tensor's bytes as they are produced: the output never has to
be held in memory.

Reading parses the header directly and copies byte ranges with `os.preadv` into a caller's
buffer. `safetensors.safe_open` maps the whole file and every page touched through the map counts
toward the process's resident memory until the file is closed; a merge of K checkpoints read that
way would end up resident at K model sizes. `iter_tensors` (safe_open, whole tensors) is kept for
callers that want torch tensors one at a time.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from assay.errors import AssayError

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
HEADER_LIMIT = 100 * 2**20  # the format's own cap on header size

# Bytes per element of each safetensors dtype.
ITEMSIZE: dict[str, int] = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1,
    "U16": 2, "I16": 2, "F16": 2, "BF16": 2,
    "U32": 4, "I32": 4, "F32": 4,
    "U64": 8, "I64": 8, "F64": 8,
}  # fmt: skip
FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64"})  # the ones a merge computes with
TORCH_DTYPE_NAMES: dict[str, str] = {
    "float32": "F32", "float": "F32", "float16": "F16", "half": "F16", "bfloat16": "BF16",
    "float64": "F64", "double": "F64", "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8",
    "uint8": "U8", "uint16": "U16", "uint32": "U32", "uint64": "U64", "bool": "BOOL",
    "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2",
}  # fmt: skip


class SafetensorsFormatError(AssayError, ValueError):
    """A file or folder that is not valid safetensors, or a write that breaks its own plan."""


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor's bytes lie: file, dtype, shape and absolute byte range."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    file: Path
    start: int  # absolute offset of the first byte in `file`
    end: int

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.end - self.start


def read_header(path: Path) -> tuple[dict[str, Any], int]:
    """The parsed JSON header of a safetensors file and the offset where its data begins."""
    with open(path, "rb") as handle:
        raw = handle.read(8)
        if len(raw) != 8:
            raise SafetensorsFormatError(f"{path}: too short to be a safetensors file")
        (length,) = struct.unpack("<Q", raw)
        if length > HEADER_LIMIT:
            raise SafetensorsFormatError(f"{path}: header of {length} bytes is not safetensors")
        try:
            header = json.loads(handle.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise SafetensorsFormatError(f"{path}: unreadable safetensors header ({err})") from err
    if not isinstance(header, dict):
        raise SafetensorsFormatError(f"{path}: safetensors header is not a JSON object")
    return header, 8 + length


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files of an HF folder: the shards named by its index, or the single file."""
    index = folder / INDEX_FILE
    if index.is_file():
        weight_map = json.loads(index.read_text()).get("weight_map", {})
        return [folder / name for name in dict.fromkeys(weight_map.values())]
    if (folder / SINGLE_FILE).is_file():
        return [folder / SINGLE_FILE]
    return sorted(folder.glob("*.safetensors"))


class Checkpoint:
    """The tensors of one HF folder across all its safetensors shards, read in byte ranges.

    Opening reads only the headers. Use as a context manager (or call `close`) to release the
    file descriptors.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        files = weight_files(self.folder)
        if not files:
            raise SafetensorsFormatError(
                f"{self.folder}: no safetensors weights (model.safetensors or shards)"
            )
        self.tensors: dict[str, TensorInfo] = {}
        self.metadata: dict[str, str] = {}
        for file in files:
            if not file.is_file():
                raise SafetensorsFormatError(
                    f"{self.folder}: shard {file.name} named by the index is missing"
                )
            header, data_start = read_header(file)
            self.metadata.update(header.pop("__metadata__", None) or {})
            for name, entry in header.items():
                if name in self.tensors:
                    raise SafetensorsFormatError(f"{self.folder}: tensor {name!r} is stored twice")
                try:
                    begin, end = entry["data_offsets"]
                    info = TensorInfo(
                        name,
                        entry["dtype"],
                        tuple(entry["shape"]),
                        file,
                        data_start + begin,
                        data_start + end,
                    )
                except (KeyError, TypeError, ValueError) as err:
                    raise SafetensorsFormatError(f"{file}: bad header entry for {name!r}") from err
                if info.dtype not in ITEMSIZE or info.nbytes != info.numel * ITEMSIZE[info.dtype]:
                    raise SafetensorsFormatError(f"{file}: tensor {name!r} has an inconsistent header entry")
                self.tensors[name] = info
        self._fds: dict[Path, int] = {}

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file descriptors opened by reads."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def read_into(self, name: str, buffer: np.ndarray, byte_offset: int = 0) -> None:
        """Fill `buffer` (any contiguous array) with the tensor's bytes starting at `byte_offset`."""
        info = self.tensors[name]
        view = memoryview(buffer).cast("B")
        if byte_offset < 0 or byte_offset + view.nbytes > info.nbytes:
            raise SafetensorsFormatError(f"read of {view.nbytes} bytes at {byte_offset} is outside {name!r}")
        fd = self._fds.get(info.file)
        if fd is None:
            fd = self._fds[info.file] = os.open(info.file, os.O_RDONLY)
        position, done = info.start + byte_offset, 0
        while done < view.nbytes:  # preadv may return short counts
            got = os.preadv(fd, [view[done:]], position + done)
            if got == 0:
                raise SafetensorsFormatError(f"{info.file}: file ends inside tensor {name!r}")
            done += got

    def read_bytes(self, name: str) -> np.ndarray:
        """The whole tensor's raw bytes as a uint8 array (for small tensors)."""
        buffer = np.empty(self.tensors[name].nbytes, dtype=np.uint8)
        self.read_into(name, buffer)
        return buffer


def iter_tensors(folder: Path) -> Iterator[tuple[str, Any]]:
    """Yield `(name, torch.Tensor)` for every tensor of an HF folder, one at a time, via safe_open."""
    from safetensors import safe_open

    for file in weight_files(Path(folder)):
        with safe_open(file, framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                yield name, handle.get_tensor(name)


@dataclass(frozen=True)
class TensorSpec:
    """What the writer needs to know about a tensor before its bytes exist."""

    name: str
    dtype: str  # safetensors dtype name: F32, BF16, I64, ...
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * ITEMSIZE[self.dtype]


def _as_bytes(data: Any) -> memoryview:
    """A flat byte view of a numpy array, a torch tensor or any buffer, without copying if possible."""
    if hasattr(data, "untyped_storage"):  # torch.Tensor: go through numpy, which has no bf16
        import torch

        data = data.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
    if isinstance(data, np.ndarray):
        data = np.ascontiguousarray(data)
    return memoryview(data).cast("B")


class SafetensorsWriter:
    """Write one safetensors file whose header is computed up front, then tensors in order.

    Tensors are written in `self.order` (by descending element size, then name, as safetensors
    itself orders them, so every tensor starts at an offset aligned to its element size).
    `write(name, data)` may be called several times per tensor with consecutive chunks.
    """

    def __init__(
        self, path: Path, specs: Sequence[TensorSpec], metadata: dict[str, str] | None = None
    ) -> None:
        self.path = Path(path)
        self.order = sorted(specs, key=lambda s: (-ITEMSIZE[s.dtype], s.name))
        header: dict[str, Any] = {"__metadata__": dict(metadata or {"format": "pt"})}
        offset = 0
        for spec in self.order:
            if spec.name in header:
                raise SafetensorsFormatError(f"tensor {spec.name!r} is planned twice")
            if spec.dtype not in ITEMSIZE:
                raise SafetensorsFormatError(f"unknown safetensors dtype {spec.dtype!r} for {spec.name!r}")
            header[spec.name] = {
                "dtype": spec.dtype,
                "shape": list(spec.shape),
                "data_offsets": [offset, offset + spec.nbytes],
            }
            offset += spec.nbytes
        encoded = json.dumps(header, separators=(",", ":")).encode()
        encoded += b" " * (-len(encoded) % 8)  # pad so the data starts 8-byte aligned
        self.data_bytes = offset
        self._handle = open(self.path, "wb", buffering=0)  # noqa: SIM115 - closed in close()
        self._handle.write(struct.pack("<Q", len(encoded)) + encoded)
        self._next = 0  # index into self.order of the tensor being written
        self._left = self.order[0].nbytes if self.order else 0

    def __enter__(self) -> SafetensorsWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(check=exc_type is None)

    def _advance_past_complete(self) -> None:
        while self._next < len(self.order) and self._left == 0:
            self._next += 1
            self._left = self.order[self._next].nbytes if self._next < len(self.order) else 0

    def write(self, name: str, data: Any) -> None:
        """Append the next bytes of tensor `name` (a numpy array, torch tensor or buffer)."""
        # Move past complete tensors (and empty ones never written) up to `name`.
        while self._next < len(self.order) and self._left == 0 and self.order[self._next].name != name:
            self._next += 1
            self._left = self.order[self._next].nbytes if self._next < len(self.order) else 0
        if self._next >= len(self.order) or self.order[self._next].name != name:
            expected = self.order[self._next].name if self._next < len(self.order) else "nothing"
            raise SafetensorsFormatError(f"{self.path.name}: got bytes for {name!r}, expected {expected!r}")
        view = _as_bytes(data)
        if view.nbytes > self._left:
            raise SafetensorsFormatError(f"{self.path.name}: too many bytes for {name!r}")
        done = 0
        while done < view.nbytes:
            done += self._handle.write(view[done:])
        self._left -= view.nbytes

    def close(self, check: bool = True) -> None:
        """Close the file; with `check`, fail if any planned tensor is incomplete."""
        if self._handle.closed:
            return
        self._handle.close()
        self._advance_past_complete()
        if check and self._next < len(self.order):
            raise SafetensorsFormatError(
                f"{self.path.name}: closed before tensor {self.order[self._next].name!r} was complete"
            )


def shard_name(index: int, count: int) -> str:
    """HF's shard file name: model-00001-of-00003.safetensors."""
    return f"model-{index:05d}-of-{count:05d}.safetensors"


class ShardedWriter:
    """Write a model's tensors into `folder` as one file or as shards of at most `max_shard_size`.

    One shard is `model.safetensors`; several are `model-0000i-of-0000n.safetensors` plus
    `model.safetensors.index.json`, the layout transformers loads. A tensor larger than the limit
    gets a shard of its own. Iterate `order` and `write` each tensor's bytes in that order.
    """

    def __init__(
        self,
        folder: Path,
        specs: Sequence[TensorSpec],
        max_shard_size: int,
        metadata: dict[str, str] | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.metadata = metadata
        ordered = sorted(specs, key=lambda s: (-ITEMSIZE[s.dtype], s.name))
        shards: list[list[TensorSpec]] = [[]]
        size = 0
        for spec in ordered:
            if shards[-1] and size + spec.nbytes > max_shard_size:
                shards.append([])
                size = 0
            shards[-1].append(spec)
            size += spec.nbytes
        self.shards = shards
        names = (
            [SINGLE_FILE]
            if len(shards) == 1
            else [shard_name(i + 1, len(shards)) for i in range(len(shards))]
        )
        self.file_names = names
        self.order = [spec for shard in shards for spec in shard]
        self.total_size = sum(spec.nbytes for spec in self.order)
        self._shard_of = {spec.name: i for i, shard in enumerate(shards) for spec in shard}
        self._current = -1
        self._writer: SafetensorsWriter | None = None

    def __enter__(self) -> ShardedWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(check=exc_type is None)

    def write(self, name: str, data: Any) -> None:
        """Append the next bytes of tensor `name`; opens the next shard when `name` lies in it."""
        shard = self._shard_of.get(name)
        if shard is None:
            raise SafetensorsFormatError(f"tensor {name!r} was not planned")
        if shard < self._current:
            raise SafetensorsFormatError(f"tensor {name!r} written out of order")
        while self._current < shard:  # a skipped shard can only hold empty tensors: close() checks
            self._open_next()
        assert self._writer is not None
        self._writer.write(name, data)

    def _open_next(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._current += 1
        self._writer = SafetensorsWriter(
            self.folder / self.file_names[self._current], self.shards[self._current], self.metadata
        )

    def close(self, check: bool = True) -> None:
        """Finish every shard (with `check`, fail if a tensor is incomplete) and write the index."""
        if not check:
            if self._writer is not None:
                self._writer.close(check=False)
            return
        while self._current < len(self.shards) - 1:
            self._open_next()
        if self._writer is not None:
            self._writer.close()
        if len(self.shards) > 1:
            index = {
                "metadata": {"total_size": self.total_size},
                "weight_map": {spec.name: self.file_names[self._shard_of[spec.name]] for spec in self.order},
            }
            (self.folder / INDEX_FILE).write_text(json.dumps(index, indent=2, sort_keys=True))


def write_tensors(folder: Path, tensors: dict[str, Any], max_shard_size: int = 5 * 10**9) -> None:
    """Write a dict of torch tensors or numpy arrays through the streaming writer (for tests/tools)."""
    specs = [TensorSpec(name, _dtype_name(value), tuple(value.shape)) for name, value in tensors.items()]
    with ShardedWriter(folder, specs, max_shard_size) as writer:
        for spec in writer.order:
            writer.write(spec.name, tensors[spec.name])


def _dtype_name(value: Any) -> str:
    """The safetensors dtype name of a torch tensor or numpy array."""
    name = str(value.dtype).removeprefix("torch.")
    if name not in TORCH_DTYPE_NAMES:
        raise SafetensorsFormatError(f"dtype {value.dtype} has no safetensors equivalent")
    return TORCH_DTYPE_NAMES[name]
