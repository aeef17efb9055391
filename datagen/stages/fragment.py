"""Cut a random fragment of a long document that fits the generator (Command A report, 3.3.6).

Lengths are counted with the generator's own tokenizer, before anything is generated. A
fragment has at most `max_fragment_tokens` tokens, and never more than what the generator has
left once the rendered QA prompt (the template with an empty fragment, in the chat template)
and `max_tokens` are taken from its context (and from the engine's `max_prompt_tokens`). A row
where that leaves fewer than `min_fragment_tokens` cannot fit: it fails with the numbers and
goes to the dead letters. The fragment starts at a seeded random token (keyed by the row's id)
and is trimmed to whole lines where a line break is near its edges.
"""

from __future__ import annotations

import hashlib
import random
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
from pydantic import Field

from datagen.stages.base import BuildContext, Row, RowStage, StageSpec
from datagen.stages.registry import register_stage
from datagen.templates import PromptTemplate

if TYPE_CHECKING:
    from model_store import ResolvedModel

EDGE_SHARE = 0.1  # trim to a line break only within this share of the fragment's edges


@lru_cache(maxsize=4)
def load_tokenizer(path: Path, gguf_file: str | None) -> Any:
    """The generator's tokenizer, once per worker process."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, **({"gguf_file": gguf_file} if gguf_file else {}))


@lru_cache(maxsize=4)
def context_length(path: Path, gguf_file: str | None) -> int:
    """The model's context (`max_position_embeddings`)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path, **({"gguf_file": gguf_file} if gguf_file else {}))
    return int(config.max_position_embeddings)


def chat_tokens(tokenizer: Any, messages: list[dict[str, str]]) -> int:
    """Tokens of a conversation rendered with the chat template, up to the assistant's turn."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return len(tokenizer(text, add_special_tokens=False).input_ids)  # as the hf engine counts


def trim_to_lines(text: str, at_start: bool, at_end: bool) -> str:
    """`text` without a partial first/last line where a line break is near that edge."""
    edge = int(len(text) * EDGE_SHARE)
    if at_start:
        cut = text.find("\n", 0, edge)
        text = text[cut + 1 :] if cut >= 0 else text
    if at_end:
        cut = text.rfind("\n", len(text) - edge)
        text = text[:cut] if cut >= 0 else text
    return text.strip()


class FragmentStageSpec(StageSpec):
    """Cut a seeded random fragment of each document that fits the generator's context."""

    type: Literal["fragment"] = "fragment"
    text: str = Field("text", description="Column holding the document.")
    output: str = Field("fragment", description="Column for the fragment.")
    model: str = Field(description="The generator's model: its tokenizer counts, its context bounds.")
    template: str = Field(description="The QA prompt template (variable `fragment`), to measure the prompt.")
    max_fragment_tokens: int = Field(8192, ge=1, description="Longest fragment, in the generator's tokens.")
    min_fragment_tokens: int = Field(
        64, ge=1, description="A row with less room than this cannot fit: dead letter."
    )
    max_tokens: int = Field(256, ge=1, description="Tokens the generator must have left to answer.")
    max_prompt_tokens: int | None = Field(
        None, ge=1, description="The engine's prompt limit, if lower than the context."
    )
    context_length: int | None = Field(
        None, ge=1, description="The generator's context (default: its config's)."
    )
    seed: int = Field(0, description="Seed of the fragment's start, combined with each row's id.")
    margin: int = Field(
        8, ge=0, description="Tokens kept free: a fragment in its prompt may tokenize a little longer."
    )


@register_stage
class FragmentStage(RowStage[FragmentStageSpec]):
    """Writes the fragment, `fragment_tokens`, `fragment_start` (its first token's index),
    `document_tokens` and `fragment_budget` (the most tokens a fragment could have)."""

    spec_class = FragmentStageSpec

    def __init__(self, spec: FragmentStageSpec, context: BuildContext | None = None) -> None:
        super().__init__(spec, context)
        context = context or BuildContext()
        self.model: ResolvedModel = context.resolve_model(spec.model, "model")
        self.template = PromptTemplate(context.resolve(spec.template))
        self.reads = ("id", spec.text, *sorted(self.template.variables - {spec.output}))
        self.writes = {
            spec.output: pa.string(),
            "fragment_tokens": pa.int64(),
            "fragment_start": pa.int64(),
            "document_tokens": pa.int64(),
            "fragment_budget": pa.int64(),
        }

    @property
    def models(self) -> list[str]:
        return [self.model.identity]

    def budget(self, tokenizer: Any, row: Row) -> int:
        """The most tokens a fragment of this row may have.

        Raises:
            ValueError: the prompt and the answer leave less than `min_fragment_tokens`.
        """
        spec = self.spec
        context = spec.context_length or context_length(self.model.path, self.model.gguf_file)
        prompt = chat_tokens(
            tokenizer, [{"role": "user", "content": self.template.render(row | {spec.output: ""})}]
        )
        limits = {"max_fragment_tokens": spec.max_fragment_tokens, "context - prompt - max_tokens":
                  context - prompt - spec.max_tokens}  # fmt: skip
        if spec.max_prompt_tokens is not None:
            limits["max_prompt_tokens - prompt"] = spec.max_prompt_tokens - prompt
        budget = min(limits.values()) - spec.margin
        if budget < spec.min_fragment_tokens:
            raise ValueError(
                f"cannot fit: context {context}, prompt template {prompt} tokens, "
                f"max_tokens {spec.max_tokens}"
                + (f", max_prompt_tokens {spec.max_prompt_tokens}" if spec.max_prompt_tokens else "")
                + f" leave {budget} tokens for the fragment (after a margin of {spec.margin});"
                f" min_fragment_tokens is {spec.min_fragment_tokens}"
            )
        return budget

    def process_row(self, row: Row) -> Row:
        spec = self.spec
        text = row[spec.text]
        if not text or not text.strip():
            raise ValueError(f"column {spec.text!r} is empty")
        tokenizer = load_tokenizer(self.model.path, self.model.gguf_file)
        budget = self.budget(tokenizer, row)
        ids = tokenizer(text, add_special_tokens=False).input_ids
        digest = hashlib.sha256(f"{spec.seed}:fragment:{row['id']}".encode()).digest()
        start = random.Random(int.from_bytes(digest[:8], "big")).randint(0, max(0, len(ids) - budget))
        end = min(len(ids), start + budget)
        fragment = trim_to_lines(tokenizer.decode(ids[start:end]), start > 0, end < len(ids))
        count = len(tokenizer(fragment, add_special_tokens=False).input_ids)
        while count > budget:  # decoding and re-encoding may merge differently: cut until it fits
            fragment = tokenizer.decode(
                tokenizer(fragment, add_special_tokens=False).input_ids[: budget - (count - budget)]
            )
            count = len(tokenizer(fragment, add_special_tokens=False).input_ids)
        return {
            spec.output: fragment,
            "fragment_tokens": count,
            "fragment_start": start,
            "document_tokens": len(ids),
            "fragment_budget": budget,
        }
