"""Tokenize conversations for training: labels only on assistant tokens, packing of short
samples, and prompt/completion pairs for preference training."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

IGNORE = -100  # label of tokens that get no loss (prompt, padding)
Messages = Sequence[dict[str, str]]


@dataclass
class Sample:
    """One tokenized sequence; `labels` is IGNORE wherever no loss is taken."""

    input_ids: list[int]
    labels: list[int]

    @property
    def n_targets(self) -> int:
        return sum(label != IGNORE for label in self.labels)


@dataclass
class PackedRow:
    """Samples laid end to end; position ids restart at each sample so none attends to another."""

    input_ids: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    position_ids: list[int] = field(default_factory=list)

    def add(self, sample: Sample) -> None:
        self.input_ids += sample.input_ids
        self.labels += sample.labels
        self.position_ids += list(range(len(sample.input_ids)))


def _render(tokenizer: Any, messages: Messages, generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(
        list(messages), tokenize=False, add_generation_prompt=generation_prompt
    )


def tokenize_conversation(tokenizer: Any, messages: Messages, max_length: int) -> Sample:
    """Tokenize a chat with loss only on assistant turns (including their end-of-turn token).

    Each assistant turn's characters are found by rendering the conversation up to it (with the
    generation prompt) and through it; tokens starting inside those spans are the targets.
    Sequences are cut at `max_length` tokens from the right.
    """
    text = _render(tokenizer, messages, generation_prompt=False)
    spans = []
    for index, message in enumerate(messages):
        if message["role"] == "assistant":
            start = len(_render(tokenizer, messages[:index], generation_prompt=True))
            spans.append((start, len(_render(tokenizer, messages[: index + 1], generation_prompt=False))))
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    labels = [
        token if any(start <= begin < end for start, end in spans) else IGNORE
        for token, (begin, _) in zip(encoded["input_ids"], encoded["offset_mapping"], strict=True)
    ]
    return Sample(encoded["input_ids"][:max_length], labels[:max_length])


def tokenize_completion(tokenizer: Any, prompt: Messages, completion: Messages, max_length: int) -> Sample:
    """Tokenize prompt + completion for preference training; too long: the prompt is cut from the
    left (so the completion, which carries the loss, is kept), then the completion from the right."""
    sample = tokenize_conversation(tokenizer, list(prompt) + list(completion), max_length=10**9)
    overflow = len(sample.input_ids) - max_length
    if overflow > 0:
        first_target = next((i for i, label in enumerate(sample.labels) if label != IGNORE), 0)
        cut = min(overflow, first_target)
        sample = Sample(sample.input_ids[cut:][:max_length], sample.labels[cut:][:max_length])
    return sample


def pack(samples: Sequence[Sample], max_length: int) -> list[PackedRow]:
    """Greedily pack samples, longest first, into rows of at most `max_length` tokens."""
    rows: list[PackedRow] = []
    for sample in sorted(samples, key=lambda s: len(s.input_ids), reverse=True):
        row = next((r for r in rows if len(r.input_ids) + len(sample.input_ids) <= max_length), None)
        if row is None:
            row = PackedRow()
            rows.append(row)
        row.add(sample)
    return rows


def as_row(sample: Sample) -> PackedRow:
    """A sample alone in its row."""
    row = PackedRow()
    row.add(sample)
    return row


def collate(rows: Sequence[PackedRow], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad rows into tensors. Padding becomes a sample of its own (positions restart), so
    attention can use the packed-sequence mask that transformers derives from position ids."""
    width = max(len(row.input_ids) for row in rows)
    input_ids, labels, positions = [], [], []
    for row in rows:
        pad = width - len(row.input_ids)
        input_ids.append(row.input_ids + [pad_id] * pad)
        labels.append(row.labels + [IGNORE] * pad)
        positions.append(row.position_ids + list(range(pad)))
    return {
        "input_ids": torch.tensor(input_ids),
        "labels": torch.tensor(labels),
        "position_ids": torch.tensor(positions),
    }
