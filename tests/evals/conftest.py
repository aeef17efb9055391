"""Test doubles of OUR Generator protocol (evals.base.Generator): replies chosen by a function."""

from collections.abc import Callable, Sequence

import pytest


class ScriptedGenerator:
    """Replies with `reply(user_message)`; an Exception it returns fails that conversation."""

    model_identity = "scripted"

    def __init__(self, reply: Callable[[str], str | Exception]) -> None:
        self.reply = reply
        self.calls: list[int] = []  # how many conversations each call carried

    def complete(
        self,
        conversations: Sequence[Sequence[dict[str, str]]],
        *,
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int = 512,
        seed: int = 0,
    ) -> list[list[str] | Exception]:
        self.calls.append(len(conversations))
        out: list[list[str] | Exception] = []
        for conversation in conversations:
            reply = self.reply(conversation[-1]["content"])
            out.append(reply if isinstance(reply, Exception) else [reply] * n)
        return out


@pytest.fixture
def scripted() -> type[ScriptedGenerator]:
    return ScriptedGenerator
