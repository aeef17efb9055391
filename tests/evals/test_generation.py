"""The engine generator: batches of the engine's size, progress after each, and the LLM-call cache."""

from pathlib import Path

from datagen.engines.config import HFEngineConfig
from evals.generation import EngineGenerator
from model_store import ModelStore

CONVERSATIONS = [[{"role": "user", "content": text}] for text in ("Hi", "Write a poem", "Escribe algo")]


def generator(tiny_model: Path, tmp_path: Path, progress: list) -> EngineGenerator:
    config = HFEngineConfig(model=str(tiny_model), batch_size=2, torch_threads=1)
    return EngineGenerator(
        config,
        store=ModelStore(tmp_path / "models"),
        cache_uri=str(tmp_path / "cache.lance"),
        progress=lambda done, total: progress.append((done, total)),
    )


def test_batches_report_progress_and_a_second_run_comes_from_the_cache(
    tiny_model: Path, tmp_path: Path
) -> None:
    progress: list[tuple[int, int]] = []
    first = generator(tiny_model, tmp_path, progress)
    replies = first.complete(CONVERSATIONS, max_tokens=4)
    assert progress == [(2, 3), (3, 3)]  # batch_size 2
    assert all(isinstance(r, list) and len(r) == 1 for r in replies)
    assert first.stats.generated == 3 and first.stats.cache_hits == 0
    assert first.stats.completion_tokens > 0

    again = generator(tiny_model, tmp_path, [])
    assert again.complete(CONVERSATIONS, max_tokens=4) == replies  # greedy, and cached
    assert again.stats.cache_hits == 3 and again.stats.generated == 0
    assert again._engine is None  # a fully cached evaluation never loads the model
    assert again.model_identity == first.model_identity


def test_other_sampling_is_another_call(tiny_model: Path, tmp_path: Path) -> None:
    first = generator(tiny_model, tmp_path, [])
    first.complete(CONVERSATIONS[:1], max_tokens=4)
    first.complete(CONVERSATIONS[:1], max_tokens=5)
    assert first.stats.generated == 2 and first.stats.cache_hits == 0
