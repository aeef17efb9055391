"""What the stages that select completions share: their prompt and completions columns, and the
sft and preference columns they write for each selected row (`code_select`, `safety_select`)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from datagen.stages.base import Row, StageSpec
from datasets_registry.kinds import MESSAGES_TYPE

# The columns of the sft (prompt, messages) and preference (prompt, chosen, rejected) kinds.
SELECTION_TYPES = {
    "prompt": MESSAGES_TYPE,
    "messages": MESSAGES_TYPE,
    "chosen": MESSAGES_TYPE,
    "rejected": MESSAGES_TYPE,
}


class SelectionStageSpec(StageSpec):
    """What every selection stage's spec reads: a prompt conversation and its completions."""

    prompt: str = Field("prompt_messages", description="Column holding the prompt conversation.")
    completions: str = Field("completions", description="Column of completions (list of {text}).")


def assistant_turn(text: str) -> list[dict[str, str]]:
    """One assistant message."""
    return [{"role": "assistant", "content": text}]


def selected_columns(
    prompt: list[dict[str, Any]], sft: str | None = None, pair: tuple[str, str] | None = None
) -> Row:
    """The sft and preference columns of a selected row: `messages` is the prompt and the SFT
    reply, `chosen` and `rejected` one assistant turn each (the pair's two texts); None where the
    row has no SFT reply or no pair."""
    return {
        "prompt": prompt,
        "messages": prompt + assistant_turn(sft) if sft is not None else None,
        "chosen": assistant_turn(pair[0]) if pair else None,
        "rejected": assistant_turn(pair[1]) if pair else None,
    }
