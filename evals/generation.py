"""The `Generator` of evals/base.py over datagen's engines and the LLM-call cache, in-process.

A suite hands over all its conversations at once; `EngineGenerator` cuts them into batches of
the engine's `batch_size`, sends each through datagen's cached-call path
(`datagen.stages.generate.generate_cached`: cache lookup, prompt check, one engine call per
batch, row-by-row retry of a failed batch, cache write) and reports progress after each batch.
No Ray: the engine loads once in this process (vllm too, as `vllm.LLM` in-process).

The cache is the one `assay run` uses (`datagen.job.cache_uri` of the default registry), so
evaluating a model twice, or generating for an evaluation what a job already generated with
the same model and sampling, costs nothing the second time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from datagen.cache import CompletionCache
from datagen.engines.base import Conversation, Engine
from datagen.engines.config import AnyEngineConfig, OpenAIEngineConfig, SamplingConfig
from datagen.stages.generate import Teacher, create_engine, generate_cached
from model_store import ModelStore

Progress = Callable[[int, int], None]
"""Called after each batch with (conversations done in this `complete` call, its total)."""


def default_cache_uri() -> str:
    """The LLM-call cache `assay run` uses: the one under the default registry."""
    from assay.settings import default_registry_root
    from datagen.job import cache_uri
    from datasets_registry import Registry

    return cache_uri(Registry(default_registry_root()))


@dataclass
class GenerationStats:
    """What a generator did: completions generated vs taken from the cache, tokens, seconds."""

    generated: int = 0
    cache_hits: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    generate_s: float = 0.0

    def tokens_per_s(self) -> float:
        """Completion tokens per second of engine time (0 when nothing was generated)."""
        return self.completion_tokens / self.generate_s if self.generate_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, with the token rate."""
        return {**self.__dict__, "tokens_per_s": round(self.tokens_per_s(), 2)}


class EngineGenerator:
    """A model behind one of datagen's engines (hf, vllm, openai), seen as a `Generator`.

    Args:
        engine: The engine config; its `model` is the model reference (a stored name, an HF
            folder or a .gguf file; for openai, the served model's name) and its `batch_size`
            the number of conversations per engine call.
        store: Where stored model names resolve (default: the local model store).
        cache_uri: The LLM-call cache; `None` for the default one, `""` for no cache.
        progress: Called after each batch (see `Progress`).

    Raises:
        ModelStoreError: The model does not resolve (before anything loads).
    """

    def __init__(
        self,
        engine: AnyEngineConfig,
        *,
        store: ModelStore | None = None,
        cache_uri: str | None = None,
        progress: Progress | None = None,
    ) -> None:
        from assay.settings import model_store_dir

        self.config = engine
        resolved = None
        if not isinstance(engine, OpenAIEngineConfig):
            resolved = (store or ModelStore(model_store_dir())).resolve(engine.model)
        self.teacher = Teacher(engine.model, engine, resolved)
        self.model_identity = self.teacher.identity
        uri = default_cache_uri() if cache_uri is None else cache_uri
        self.cache_uri = uri or None
        self.cache = CompletionCache(uri) if uri else None
        self.progress = progress
        self.stats = GenerationStats()
        self._engine: Engine | None = None

    @property
    def backend(self) -> str:
        """The engine's backend name (hf, vllm, openai)."""
        return self.config.backend

    @property
    def engine(self) -> Engine:
        """The loaded engine (loaded on first use: a fully cached evaluation never loads it)."""
        if self._engine is None:
            self._engine = create_engine(self.teacher)
        return self._engine

    def close(self) -> None:
        """Release the engine (HTTP clients of the openai engine)."""
        close = getattr(self._engine, "close", None)
        if close is not None:
            close()
        self._engine = None

    def complete(
        self,
        conversations: Sequence[Conversation],
        *,
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int = 512,
        seed: int = 0,
    ) -> list[list[str] | Exception]:
        """`n` reply texts per conversation (temperature 0 = greedy), or the error that failed it."""
        sampling = SamplingConfig(n=n, temperature=temperature, max_tokens=max_tokens, seed=seed)
        replies: list[list[str] | Exception] = []
        batch_size = self.config.batch_size
        for start in range(0, len(conversations), batch_size):
            batch = [list(c) for c in conversations[start : start + batch_size]]
            replies += [self._texts(outcome) for outcome in self._generate(batch, sampling)]
            if self.progress is not None:
                self.progress(len(replies), len(conversations))
        return replies

    def _generate(
        self, batch: list[Conversation], sampling: SamplingConfig
    ) -> list[list[dict[str, Any]] | Exception]:
        started = time.monotonic()
        if self.cache is not None and self._engine is None:
            # All cached: answer without loading the model.
            outcomes = generate_cached(self.teacher, _NeverCalled(), batch, sampling, self.cache)
            if not any(isinstance(o, _NotCachedError) for o in outcomes):
                self._count(outcomes, time.monotonic() - started)
                return outcomes
        outcomes = generate_cached(self.teacher, self.engine, batch, sampling, self.cache)
        self._count(outcomes, time.monotonic() - started)
        return outcomes

    def _count(self, outcomes: list[list[dict[str, Any]] | Exception], seconds: float) -> None:
        fresh = False
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                self.stats.failed += 1
                continue
            for completion in outcome:
                if completion.get("cached"):
                    self.stats.cache_hits += 1
                    continue
                fresh = True
                self.stats.generated += 1
                self.stats.prompt_tokens += completion["prompt_tokens"]
                self.stats.completion_tokens += completion["completion_tokens"]
        if fresh:
            self.stats.generate_s += seconds

    @staticmethod
    def _texts(outcome: list[dict[str, Any]] | Exception) -> list[str] | Exception:
        return outcome if isinstance(outcome, Exception) else [c["text"] for c in outcome]


class _NotCachedError(RuntimeError):
    """A conversation the cache does not hold (the engine must load)."""


class _NeverCalled:
    """An engine stand-in for a cache-only pass: every prompt it is asked to check is a miss."""

    model_id = "cache-only"

    def check_prompt(self, conversation: Conversation) -> None:
        raise _NotCachedError("not cached")

    def generate(self, conversations: Sequence[Conversation], sampling: SamplingConfig) -> list[Any]:
        raise AssertionError("a cache-only pass never generates")
