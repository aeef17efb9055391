"""What every engine returns: completions with their token counts."""

from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa

COMPLETION_TYPE = pa.struct(
    [
        ("text", pa.string()),
        ("model", pa.string()),
        ("temperature", pa.float64()),
        ("finish_reason", pa.string()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
    ]
)
COMPLETIONS_TYPE = pa.list_(COMPLETION_TYPE)


@dataclass(frozen=True)
class Completion:
    """One sampled completion. `finish_reason` is "stop" (end of turn) or "length"."""

    text: str
    model: str
    temperature: float
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int

    def to_row(self) -> dict[str, Any]:
        return asdict(self)
