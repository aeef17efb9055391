"""Preference pairs for reward models: validation, hh-rlhf conversion, tokenization, truncation.

A sample is the chat template rendered over prompt + one response. Too long a sample loses
the start of its prompt (the response, which the reward judges, is kept whole), or its pair is
dropped; both are counted, never silent.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from reward_model.config import RMConfigError

Messages = list[dict[str, str]]


@dataclass
class RMPair:
    """A validated preference pair: `label` is the probability that `chosen` is better."""

    prompt: Messages
    chosen: Messages
    rejected: Messages
    label: float
    stage: int = 2
    margin: float | None = None
    id: str | None = None


@dataclass
class TokenizedPair:
    """Token ids of prompt + chosen and prompt + rejected, with the pair's target."""

    chosen: list[int]
    rejected: list[int]
    label: float
    margin: float = 0.0
    index: int = 0  # position of the pair in its source list


@dataclass
class PairCounts:
    """What happened to input pairs on the way to training: kept, truncated, dropped and why."""

    kept: int = 0
    truncated: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {"kept": self.kept, "truncated": self.truncated, "dropped": dict(self.dropped)}


def _as_messages(value: Any, role: str | None = None) -> Messages:
    """Messages from a list of {role, content}, one such dict, or plain text (an assistant turn)."""
    if isinstance(value, str):
        return [{"role": role or "assistant", "content": value}]
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list | tuple):
        raise ValueError(f"expected messages or text, got {type(value).__name__}")
    messages = []
    for message in value:
        if not isinstance(message, dict) or "content" not in message or "role" not in message:
            raise ValueError("each message needs `role` and `content`")
        messages.append({"role": str(message["role"]), "content": str(message["content"] or "")})
    return messages


def validate_pair(row: dict[str, Any], *, gold_label: float = 0.999, tie_label: float = 0.5) -> RMPair:
    """Check one rm_pairs row and return it as an RMPair.

    A missing label means a gold pair (`gold_label`), or `tie_label` when the row's `tied` is true.

    Raises:
        ValueError: an empty side, a label that is not a number in [0, 1], or a stage not 1 or 2.
    """
    prompt = _as_messages(row.get("prompt") or [], role="user")
    chosen, rejected = _as_messages(row.get("chosen") or []), _as_messages(row.get("rejected") or [])
    for side, messages in (("chosen", chosen), ("rejected", rejected)):
        if not any(m["content"].strip() for m in messages):
            raise ValueError(f"empty {side}")
    label = row.get("label")
    if label is None:
        label = tie_label if row.get("tied") else gold_label
    if isinstance(label, bool) or not isinstance(label, int | float) or not math.isfinite(label):
        raise ValueError(f"label {label!r} is not a finite number")
    if not 0.0 <= label <= 1.0:
        raise ValueError(f"label {label} is outside [0, 1]")
    stage = row.get("stage")
    stage = 2 if stage is None else stage
    if stage not in (1, 2):
        raise ValueError(f"stage {stage!r} is not 1 or 2")
    margin = row.get("margin")
    if margin is not None and (not math.isfinite(margin) or margin < 0):
        raise ValueError(f"margin {margin!r} is not a finite number >= 0")
    return RMPair(prompt, chosen, rejected, float(label), int(stage), margin, row.get("id"))


def validate_pairs(
    rows: Iterable[dict[str, Any]],
    *,
    source: str,
    invalid: str = "drop",
    gold_label: float = 0.999,
    tie_label: float = 0.5,
) -> tuple[list[RMPair], Counter[str]]:
    """Validate rows; bad ones are dropped and counted by reason, or raise naming source and row."""
    pairs: list[RMPair] = []
    dropped: Counter[str] = Counter()
    for index, row in enumerate(rows):
        try:
            pairs.append(validate_pair(row, gold_label=gold_label, tie_label=tie_label))
        except ValueError as err:
            if invalid == "error":
                raise RMConfigError(f"{source}: row {index}: {err}") from err
            dropped[_reason(err)] += 1
    return pairs, dropped


def _reason(err: ValueError) -> str:
    text = str(err)
    if text.startswith("empty"):
        return text
    for key in ("label", "stage", "margin"):
        if text.startswith(key):
            return f"bad {key}"
    return "malformed"


def render_prompt(tokenizer: Any, prompt: Messages) -> str:
    """The prompt as the chat template renders it, ending with the assistant's generation prompt."""
    if not prompt:
        return ""
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)


def tokenize_sample(
    tokenizer: Any, prompt: Messages, response: Messages, max_length: int, truncation: str = "left"
) -> tuple[list[int], bool] | None:
    """Token ids of the chat template over prompt + response, and whether the prompt was cut.

    The prompt and the response are tokenized separately (the prompt ends with the generation
    prompt), so the prompt can be cut from the left without touching the response. Returns None
    when the sample is too long and cannot be cut (`truncation="drop"`, or the response alone
    does not fit).
    """
    full = tokenizer.apply_chat_template(prompt + response, tokenize=False, add_generation_prompt=False)
    head = render_prompt(tokenizer, prompt)
    if not full.startswith(head):  # a template that rewrites earlier turns: no clean cut point
        head = ""
    prompt_ids = tokenizer(head, add_special_tokens=False)["input_ids"] if head else []
    response_ids = tokenizer(full[len(head) :], add_special_tokens=False)["input_ids"]
    overflow = len(prompt_ids) + len(response_ids) - max_length
    if overflow <= 0:
        return prompt_ids + response_ids, False
    if truncation == "drop" or overflow > len(prompt_ids):
        return None
    return prompt_ids[overflow:] + response_ids, True


def tokenize_pairs(
    tokenizer: Any,
    pairs: Sequence[RMPair],
    max_length: int,
    truncation: str = "left",
    default_margin: float = 0.0,
) -> tuple[list[TokenizedPair], PairCounts]:
    """Tokenize pairs; count the ones whose prompt was cut and the ones dropped as too long."""
    out: list[TokenizedPair] = []
    counts = PairCounts()
    for index, pair in enumerate(pairs):
        chosen = tokenize_sample(tokenizer, pair.prompt, pair.chosen, max_length, truncation)
        rejected = tokenize_sample(tokenizer, pair.prompt, pair.rejected, max_length, truncation)
        if chosen is None or rejected is None:
            counts.dropped["too long"] += 1
            continue
        counts.truncated += chosen[1] or rejected[1]
        margin = default_margin if pair.margin is None else pair.margin
        out.append(TokenizedPair(chosen[0], rejected[0], pair.label, margin, index))
    counts.kept = len(out)
    return out, counts


HUMAN, ASSISTANT = "\n\nHuman:", "\n\nAssistant:"


def split_dialogue(text: str) -> Messages:
    """Split an hh-rlhf dialogue ("\\n\\nHuman: ...\\n\\nAssistant: ...") into chat messages."""
    messages: Messages = []
    rest = text
    while rest:
        starts = [(rest.find(tag), tag) for tag in (HUMAN, ASSISTANT) if rest.find(tag) >= 0]
        if not starts:
            if messages:  # text after the last tag belongs to the last turn
                messages[-1]["content"] += rest
            break
        position, tag = min(starts)
        if messages and position > 0:
            messages[-1]["content"] += rest[:position]
        rest = rest[position + len(tag) :]
        messages.append({"role": "user" if tag == HUMAN else "assistant", "content": ""})
    for message in messages:
        message["content"] = message["content"].strip()
    return messages


def hh_rlhf_pair(record: dict[str, str]) -> dict[str, Messages]:
    """One hh-rlhf record as prompt / chosen / rejected messages.

    The prompt is the dialogue both sides share, up to its last "\\n\\nAssistant:", split into
    turns; chosen and rejected are what follows in each dialogue (the final assistant turns; a
    few hh-rlhf responses themselves contain "Assistant:", so the cut is taken in the shared part).

    Raises:
        ValueError: the dialogues share no assistant turn.
    """
    import os.path

    shared = os.path.commonprefix([record["chosen"], record["rejected"]])
    cut = shared.rfind(ASSISTANT)
    if cut < 0:
        raise ValueError("the two dialogues share no assistant turn")
    start = cut + len(ASSISTANT)
    return {
        "prompt": split_dialogue(shared[:cut]),
        "chosen": [{"role": "assistant", "content": record["chosen"][start:].strip()}],
        "rejected": [{"role": "assistant", "content": record["rejected"][start:].strip()}],
    }


HH_TRAIN_SIZE = 1849  # of the 2,312 harmless-base test pairs; the rest (463) are held out


def hh_rlhf_split(records: Sequence[dict[str, str]], seed: int = 0) -> tuple[list[int], list[int]]:
    """The fixed split of the issue: shuffle indices with random.Random(seed); the first 1,849 are
    train, the other 463 test (in that shuffled order)."""
    import random

    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    return order[:HH_TRAIN_SIZE], order[HH_TRAIN_SIZE:]
