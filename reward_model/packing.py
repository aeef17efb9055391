"""Packing pairs into rows: block-diagonal attention, aligned ends, even rows (Command A 3.2.3).

A packed row has two tracks of equal length: the chosen samples of its pairs on one, their
rejected samples on the other. Each pair is left-padded to its longer side so the last tokens
(where a decoder's reward is read) sit at the same index on both tracks. Position ids restart
at 0 for every sample and every run of padding; transformers turns restarting position ids
into a block-diagonal causal mask, so a sample attends only to itself and computes exactly
what it would alone. Scoring single samples uses the same rows with one track.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch


@dataclass
class Segment:
    """One pair (two tracks) or one sample (one track), left-padded to a common length."""

    tracks: tuple[list[int], ...]
    label: float = 0.0
    margin: float = 0.0
    index: int = 0

    @property
    def length(self) -> int:
        return max(len(track) for track in self.tracks)

    @property
    def real_tokens(self) -> int:
        return sum(len(track) for track in self.tracks)


@dataclass
class PackedRow:
    """Segments laid end to end."""

    segments: list[Segment] = field(default_factory=list)

    @property
    def length(self) -> int:
        return sum(segment.length for segment in self.segments)


@dataclass
class PackedBatch:
    """Tensors for one forward pass over rows of `tracks` tracks each.

    `input_ids` and `position_ids` are [tracks * rows, width]: track t of row r is at
    t * rows + r. `ends` holds the (row, column) of each segment's last token, the same on
    every track.
    """

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    end_rows: torch.Tensor
    end_cols: torch.Tensor
    labels: torch.Tensor
    margins: torch.Tensor
    indices: list[int]
    tracks: int
    real_tokens: int

    @property
    def pairs(self) -> int:
        return len(self.indices)

    @property
    def slots(self) -> int:
        return self.input_ids.numel()


def pack_segments(segments: Sequence[Segment], capacity: int, fill_target: float = 0.75) -> list[PackedRow]:
    """Distribute segments over rows: each row filled towards `fill_target * capacity` tokens,
    and the number of segments per row as even as possible.

    The row count is what the target asks for (total length / target, at least as many rows as
    the longest segments need). Segments go longest first to the least-loaded row that still has
    room and has fewer than its even share (ceil(segments / rows)); a row is added only when
    none has room. So loads stay balanced and counts differ by at most one, except where a new
    row had to be opened.
    """
    if not segments:
        return []
    too_long = [s.length for s in segments if s.length > capacity]
    if too_long:
        raise ValueError(f"a segment of {max(too_long)} tokens exceeds the row capacity {capacity}")
    total = sum(segment.length for segment in segments)
    n_rows = max(1, math.ceil(total / (fill_target * capacity)))
    n_rows = min(n_rows, len(segments))
    rows = [PackedRow() for _ in range(n_rows)]
    share = math.ceil(len(segments) / n_rows)
    for segment in sorted(segments, key=lambda s: s.length, reverse=True):
        fitting = [r for r in rows if r.length + segment.length <= capacity and len(r.segments) < share] or [
            r for r in rows if r.length + segment.length <= capacity
        ]
        if not fitting:
            rows.append(PackedRow())
            fitting = rows[-1:]
        min(fitting, key=lambda r: (r.length, len(r.segments))).segments.append(segment)
    return rows


def single_rows(segments: Sequence[Segment]) -> list[PackedRow]:
    """Every segment in a row of its own (no packing)."""
    return [PackedRow([segment]) for segment in segments]


def collate(rows: Sequence[PackedRow], pad_id: int) -> PackedBatch:
    """Lay rows out as tensors; every padding run is its own block of restarting positions."""
    tracks = len(rows[0].segments[0].tracks)
    width = max(row.length for row in rows)
    input_ids = [[[pad_id] * width for _ in rows] for _ in range(tracks)]
    positions = [[[0] * width for _ in rows] for _ in range(tracks)]
    end_rows, end_cols, labels, margins, indices = [], [], [], [], []
    real = 0
    for r, row in enumerate(rows):
        offset = 0
        for segment in row.segments:
            n = segment.length
            for t, ids in enumerate(segment.tracks):
                pad = n - len(ids)
                input_ids[t][r][offset + pad : offset + n] = ids
                positions[t][r][offset : offset + n] = list(range(pad)) + list(range(len(ids)))
                real += len(ids)
            end_rows.append(r)
            end_cols.append(offset + n - 1)
            labels.append(segment.label)
            margins.append(segment.margin)
            indices.append(segment.index)
            offset += n
        for t in range(tracks):  # trailing padding: one more block of its own
            positions[t][r][offset:] = list(range(width - offset))
    flat = lambda x: [row for track in x for row in track]  # noqa: E731 - track-major order
    return PackedBatch(
        input_ids=torch.tensor(flat(input_ids)),
        position_ids=torch.tensor(flat(positions)),
        end_rows=torch.tensor(end_rows),
        end_cols=torch.tensor(end_cols),
        labels=torch.tensor(labels, dtype=torch.float32),
        margins=torch.tensor(margins, dtype=torch.float32),
        indices=indices,
        tracks=tracks,
        real_tokens=real,
    )


def group_rows(rows: Sequence[PackedRow], pairs_per_batch: int) -> list[list[PackedRow]]:
    """Consecutive rows grouped until each group holds at least `pairs_per_batch` segments."""
    groups: list[list[PackedRow]] = []
    current: list[PackedRow] = []
    count = 0
    for row in rows:
        current.append(row)
        count += len(row.segments)
        if count >= pairs_per_batch:
            groups.append(current)
            current, count = [], 0
    if current:
        groups.append(current)
    return groups


def fill_ratio(rows: Sequence[PackedRow], width: int | None = None) -> float:
    """Real tokens over the slots the rows take when padded to `width` (default: each row's
    micro batch is unknown, so the longest row)."""
    if not rows:
        return 0.0
    tracks = len(rows[0].segments[0].tracks)
    width = width or max(row.length for row in rows)
    real = sum(segment.real_tokens for row in rows for segment in row.segments)
    return real / (tracks * width * len(rows))
