"""Batch scoring with a reward model: pairs (ensemble relabelling, evaluation) and single
(prompt, completion) samples (pipelines), through the same packed rows as training."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from reward_model.data import Messages, TokenizedPair, _as_messages, tokenize_sample
from reward_model.model import RewardModel
from reward_model.packing import Segment, collate, group_rows, pack_segments, single_rows


def pair_segments(pairs: Sequence[TokenizedPair]) -> list[Segment]:
    """Two-track segments (chosen, rejected) carrying each pair's label and margin."""
    return [Segment((p.chosen, p.rejected), p.label, p.margin, i) for i, p in enumerate(pairs)]


@torch.no_grad()
def score_segments(
    model: RewardModel,
    segments: Sequence[Segment],
    pad_id: int,
    *,
    capacity: int,
    batch_segments: int = 16,
    packing: bool = True,
    fill_target: float = 0.75,
    on_batch: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Rewards of every segment, shape [tracks, segments], in the order given (whatever their
    `index`). `on_batch` receives the number of segments each forward pass scored."""
    if not segments:
        return torch.zeros(1, 0)
    model.eval()
    segments = [replace(segment, index=i) for i, segment in enumerate(segments)]  # columns of the output
    packed = packing and model.pooling == "last"
    rows = pack_segments(segments, capacity, fill_target) if packed else single_rows(segments)
    out = torch.zeros(len(segments[0].tracks), len(segments))
    for group in group_rows(rows, batch_segments):
        batch = collate(group, pad_id)
        out[:, batch.indices] = model(batch).float().cpu()
        if on_batch is not None:
            on_batch(len(batch.indices))
    return out


class RewardScorer:
    """A loaded reward model and its tokenizer, scoring (prompt, completion) samples."""

    def __init__(self, path: Path | str, max_length: int = 1024, batch_size: int = 16) -> None:
        from transformers import AutoTokenizer

        self.model = RewardModel.load(path)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.max_length, self.batch_size = max_length, batch_size

    def score(self, prompts: Sequence[Any], completions: Sequence[Any]) -> list[float]:
        """One reward per (prompt, completion); prompts are messages or text, completions text or
        assistant messages. A prompt too long for `max_length` is cut from the left."""
        ids = [
            self.tokenize(prompt, completion) for prompt, completion in zip(prompts, completions, strict=True)
        ]
        return self.score_ids(ids)

    def score_ids(self, samples: Sequence[list[int]]) -> list[float]:
        """One reward per tokenized sample, in packed batches."""
        segments = [Segment((ids,), index=i) for i, ids in enumerate(samples)]
        rewards = score_segments(
            self.model, segments, self.tokenizer.pad_token_id, capacity=self.max_length,
            batch_segments=self.batch_size,
        )  # fmt: skip
        return rewards[0].tolist()

    def tokenize(self, prompt: Any, completion: Any) -> list[int]:
        """Token ids of one sample; raises ValueError if the completion alone is too long."""
        prompt_messages: Messages = _as_messages(prompt, role="user")
        result = tokenize_sample(self.tokenizer, prompt_messages, _as_messages(completion), self.max_length)
        if result is None:
            raise ValueError(f"completion alone is longer than max_length {self.max_length} tokens")
        return result[0]
