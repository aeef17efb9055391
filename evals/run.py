"""Evaluate a model on suites, and store each suite's result with the model when it is stored.

    runs = evaluate_model("smollm2-135m-instruct", ["core"], limit=20)

`evaluate` runs suites on any `Generator`; `evaluate_model` builds the engine generator
(evals.generation), runs the suites, and appends each result to the stored model's evaluation
log (evals.results). A model given as an HF folder or a .gguf file, not a stored name, is
evaluated all the same but nothing is stored (`SuiteRun.stored` is None).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from evals.base import EvalError, Generator, Suite, SuiteResult
from evals.results import StoredRun, store_result
from evals.suites import SUITES, resolve_suites
from model_store import LATEST, ModelStore


@dataclass
class SuiteRun:
    """One suite's result, what generating it cost, and where it was stored (None: not stored)."""

    result: SuiteResult
    generation: dict[str, Any] = field(default_factory=dict)
    stored: StoredRun | None = None


def build_suite(name: str, **options: Any) -> Suite:
    """The suite called `name`, given the options its constructor names (None values dropped):
    options are shared by the suites of a run, each taking those it has. A split other than the
    test split is the exception: a suite without it is refused, never measured on its test split.

    Raises:
        EvalError: No suite is called `name`, or it has no such split.
    """
    if name not in SUITES:
        resolve_suites([name])  # raises, listing the suites
    cls = SUITES[name]
    accepted = inspect.signature(cls).parameters
    split = options.get("split")
    if split not in (None, "test") and "split" not in accepted:
        raise EvalError(f"suite {name!r} has no {split} split")
    return cls(**{k: v for k, v in options.items() if v is not None and k in accepted})


def concrete_name(store: ModelStore, model: str) -> str:
    """`NAME@latest` as the stored model it names now (results are stored with that one)."""
    return store.resolve(model).ref if model.endswith(LATEST) else model


def evaluate(
    generator: Generator,
    suites: Sequence[str],
    *,
    limit: int | None = None,
    options: dict[str, Any] | None = None,
    on_suite: Callable[[str], None] | None = None,
    on_result: Callable[[SuiteRun], None] | None = None,
) -> list[SuiteRun]:
    """Run suites (names or groups) on a generator, one after another.

    Args:
        generator: The model under evaluation.
        suites: Suite or group names (`core`).
        limit: Evaluate each suite on its first `limit` items only.
        options: Suite options (max_tokens, languages, data_dir): each suite takes those it names.
        on_suite: Called with each suite's name before it starts.
        on_result: Called with each suite's run as soon as it is done (to store it at once, so a
            later suite's failure loses nothing finished).

    Raises:
        EvalError: An unknown suite, before anything runs.
    """
    if limit is not None and limit < 1:
        raise EvalError(f"--limit must be at least 1, got {limit}")
    built = [build_suite(name, **(options or {})) for name in resolve_suites(list(suites))]
    runs = []
    for suite in built:
        if on_suite is not None:
            on_suite(suite.name)
        before = _stats(generator)
        result = suite.run(generator, limit=limit)
        after = _stats(generator)
        generation = {k: round(after[k] - before.get(k, 0), 3) for k in after if k != "tokens_per_s"}
        if generation.get("generate_s"):
            generation["tokens_per_s"] = round(generation["completion_tokens"] / generation["generate_s"], 2)
        runs.append(SuiteRun(result, generation))
        if on_result is not None:
            on_result(runs[-1])
    return runs


def _stats(generator: Generator) -> dict[str, float]:
    stats = getattr(generator, "stats", None)
    return stats.as_dict() if stats is not None else {}


def evaluate_model(
    model: str,
    suites: Sequence[str],
    *,
    backend: str = "hf",
    limit: int | None = None,
    max_tokens: int | None = None,
    batch_size: int | None = None,
    threads: int | None = None,
    options: dict[str, Any] | None = None,
    store: ModelStore | None = None,
    cache_uri: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_suite: Callable[[str], None] | None = None,
) -> list[SuiteRun]:
    """Evaluate a model through one of datagen's local engines; store results if it is stored.

    Args:
        model: A stored model name, an HF folder or a .gguf file.
        suites: Suite or group names.
        backend: `hf` or `vllm`.
        limit: Items per suite (the first N; round-robin over languages or labels).
        max_tokens: Reply length limit for every suite (default: each suite's own).
        batch_size: Conversations per engine call (default: the engine's).
        threads: Torch threads of the hf engine (default: its own, 1).
        options: More suite options (e.g. `languages` for mgsm).
        store: The model store (default: the local one).
        cache_uri: The LLM-call cache (None: `assay run`'s; "": none).
        progress: Called after each batch with (done, total) of the running suite.
        on_suite: Called with each suite's name before it starts.

    Raises:
        EvalError: An unknown suite or backend (before the model loads).
        ModelStoreError: The model does not resolve.
    """
    from assay.settings import model_store_dir
    from datagen.engines.config import parse_engine_config
    from evals.generation import EngineGenerator

    if backend not in ("hf", "vllm"):
        raise EvalError(f"--backend must be hf or vllm, got {backend!r}")
    resolve_suites(list(suites))  # an unknown suite fails before the model loads
    store = store or ModelStore(model_store_dir())
    model = concrete_name(store, model)
    raw: dict[str, Any] = {"backend": backend, "model": model}
    if batch_size is not None:
        raw["batch_size"] = batch_size
    if threads is not None and backend == "hf":
        raw["torch_threads"] = threads
    config = parse_engine_config(raw)
    generator = EngineGenerator(config, store=store, cache_uri=cache_uri, progress=progress)
    engine_settings = {"engine": config.model_dump(mode="json", exclude={"model"})}
    stored = store.has(model)

    def record(run: SuiteRun) -> None:
        run.result.settings = {**run.result.settings, **engine_settings}
        if stored:
            run.stored = store_result(
                store, model, run.result, model_identity=generator.model_identity, generation=run.generation
            )

    try:
        return evaluate(
            generator,
            suites,
            limit=limit,
            options={"max_tokens": max_tokens, **(options or {})},
            on_suite=on_suite,
            on_result=record,
        )
    finally:
        generator.close()
