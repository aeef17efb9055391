"""What the suites share: the order a `--limit` takes items in, and turning replies into records."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def interleave(items: Sequence[T], group: Callable[[T], Hashable], limit: int | None) -> list[T]:
    """The first `limit` items, taken round-robin over groups (languages, labels).

    Every group keeps its own order, and groups come in the order they first appear, so a small
    `limit` still covers every language (or label) instead of the first file only. Without a
    limit every item is returned, in that same interleaved order.
    """
    groups: dict[Hashable, list[T]] = {}
    for item in items:
        groups.setdefault(group(item), []).append(item)
    ordered: list[T] = []
    depth = max((len(members) for members in groups.values()), default=0)
    for index in range(depth):
        ordered += [members[index] for members in groups.values() if index < len(members)]
    return ordered if limit is None else ordered[:limit]


def user_turn(text: str) -> list[dict[str, str]]:
    """A one-turn conversation."""
    return [{"role": "user", "content": text}]


def first_reply(outcome: list[str] | Exception) -> tuple[str, str | None]:
    """(the first reply text, None), or ("", the error) when generation failed.

    A failed generation scores as a wrong answer (it gave nothing) and its record keeps the
    error, so a number never silently drops the items that failed.
    """
    if isinstance(outcome, Exception):
        return "", f"{type(outcome).__name__}: {outcome}"
    return (outcome[0] if outcome else ""), None


def sampling_settings(max_tokens: int, limit: int | None, **extra: Any) -> dict[str, Any]:
    """The settings every suite records: greedy decoding, its token limit, the item limit."""
    return {"limit": limit, "sampling": {"n": 1, "temperature": 0.0, "max_tokens": max_tokens}, **extra}
