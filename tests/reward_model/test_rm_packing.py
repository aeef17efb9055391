"""Packing: packed rewards equal rewards computed alone; rows are filled and even."""

import random
from pathlib import Path

import pytest
import torch

from reward_model.model import RewardModel
from reward_model.packing import Segment, collate, fill_ratio, group_rows, pack_segments, single_rows


def random_segments(n: int, low: int, high: int, seed: int = 0) -> list[Segment]:
    """Pairs as real ones are: a shared prompt, so both sides have similar lengths."""
    rng = random.Random(seed)
    segments = []
    for i in range(n):
        length = rng.randint(low, high)
        sides = [length, max(1, length - rng.randint(0, length // 5))]
        rng.shuffle(sides)
        segments.append(Segment(tuple([rng.randrange(3, 300) for _ in range(k)] for k in sides), index=i))
    return segments


def test_packed_rewards_equal_rewards_alone(tiny_model: Path, tiny_tokenizer) -> None:  # noqa: ANN001
    model = RewardModel.from_backbone(tiny_model, seed=3).eval()
    segments = random_segments(9, 3, 40)
    rows = pack_segments(segments, capacity=160, fill_target=0.75)
    assert max(len(row.segments) for row in rows) >= 3  # the test packs for real
    pad = tiny_tokenizer.pad_token_id
    with torch.no_grad():
        packed = torch.zeros(2, len(segments))
        batch = collate(rows, pad)
        packed[:, batch.indices] = model(batch)
        for segment in segments:
            for track in range(2):
                alone = model(collate([single_rows([Segment((segment.tracks[track],))])[0]], pad))
                assert packed[track, segment.index].item() == pytest.approx(alone.item(), abs=1e-4)
    # and the packing is not a no-op: a sample that could see its neighbours would score differently
    assert len(set(packed.flatten().tolist())) == packed.numel()


def test_pair_ends_align_and_positions_restart() -> None:
    chosen, rejected = [5, 6, 7, 8], [9, 10]
    batch = collate([pack_segments([Segment((chosen, rejected)), Segment(([11], [12, 13, 14]))], 16)[0]], 0)
    ids, pos = batch.input_ids, batch.position_ids
    (first_end, second_end) = sorted(batch.end_cols.tolist())
    assert first_end == 3 and second_end == 6  # both tracks end each pair at the same column
    assert ids[0, :4].tolist() == chosen and ids[1, :4].tolist() == [0, 0, 9, 10]  # rejected is left-padded
    assert pos[1, :4].tolist() == [0, 1, 0, 1]  # padding run, then the sample, each from 0
    assert ids[0, 4:7].tolist() == [0, 0, 11] and ids[1, 4:7].tolist() == [12, 13, 14]


def test_rows_are_filled_towards_the_target_and_even() -> None:
    segments = random_segments(200, 20, 200, seed=1)
    capacity, target = 512, 0.75
    rows = pack_segments(segments, capacity, target)
    counts = [len(row.segments) for row in rows]
    assert sum(counts) == 200 and sorted(s.index for r in rows for s in r.segments) == list(range(200))
    assert max(counts) - min(counts) <= 1  # samples per row as even as possible
    loads = [row.length for row in rows]
    assert all(load <= capacity for load in loads)
    mean_load = sum(loads) / len(loads) / capacity
    assert 0.65 <= mean_load <= 0.80  # towards 75 % of the row
    assert fill_ratio(rows) >= 0.7  # of the slots a batch of these rows computes
    # unpacked, the same pairs padded to the longest in batches of 8 waste far more
    unpacked = [fill_ratio(group) for group in group_rows(single_rows(segments), 8)]
    assert sum(unpacked) / len(unpacked) < fill_ratio(rows)


def test_segment_longer_than_a_row_is_refused() -> None:
    with pytest.raises(ValueError, match="exceeds the row capacity"):
        pack_segments(random_segments(2, 50, 60), capacity=40)


def test_groups_hold_the_requested_pairs() -> None:
    rows = pack_segments(random_segments(40, 5, 30), 128)
    groups = group_rows(rows, 8)
    assert all(sum(len(r.segments) for r in g) >= 8 for g in groups[:-1])
    assert sum(len(r.segments) for g in groups for r in g) == 40
