"""The `hf` engine on a tiny model: left padding, seeds, token counts, and the generate stage's
row isolation (too-long prompts, a batch that fails)."""

from pathlib import Path

import pyarrow as pa
import pytest

from datagen.engines.config import HFEngineConfig, SamplingConfig
from datagen.engines.hf import HFEngine
from datagen.sources import prepare_rows
from datagen.stages.base import ERROR_COLUMN, BuildContext
from datagen.stages.generate import Teacher, TeacherSpec, _GenerateWorker
from datasets_registry.kinds import MESSAGES_TYPE
from model_store import ModelStore

PROMPTS = ["Hi", "Write a short story about the sea and a lighthouse keeper", "Escribe una receta"]


def chat(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


@pytest.fixture
def engine(tiny_model: Path, tmp_path: Path) -> HFEngine:
    config = HFEngineConfig(model=str(tiny_model), max_prompt_tokens=64, torch_threads=1)
    return HFEngine(config, ModelStore(tmp_path).resolve(str(tiny_model)))


def test_batched_greedy_equals_one_at_a_time(engine: HFEngine) -> None:
    greedy = SamplingConfig(n=1, temperature=0.0, max_tokens=8)
    batched = engine.generate([chat(p) for p in PROMPTS], greedy)
    for prompt, (completion,) in zip(PROMPTS, batched, strict=True):
        (alone,) = engine.generate([chat(prompt)], greedy)[0]
        assert completion.text == alone.text
        assert completion.prompt_tokens == alone.prompt_tokens


def test_seed_reproduces_and_counts_are_right(engine: HFEngine) -> None:
    sampling = SamplingConfig(n=2, temperature=[1.0, 1.5], max_tokens=6, seed=7)
    first = engine.generate([chat(p) for p in PROMPTS], sampling)
    assert first == engine.generate([chat(p) for p in PROMPTS], sampling)
    other = engine.generate([chat(p) for p in PROMPTS], sampling.model_copy(update={"seed": 8}))
    assert first != other
    for prompt, completions in zip(PROMPTS, first, strict=True):
        rendered = engine.render(chat(prompt))
        prompt_tokens = len(engine.tokenizer(rendered, add_special_tokens=False).input_ids)
        assert [c.temperature for c in completions] == [1.0, 1.5]
        for completion in completions:
            assert completion.prompt_tokens == prompt_tokens
            assert 1 <= completion.completion_tokens <= 6
            assert completion.finish_reason in ("stop", "length")
            assert completion.finish_reason == "stop" or completion.completion_tokens == 6


def test_a_seeded_sample_does_not_depend_on_its_batch(engine: HFEngine) -> None:
    sampling = SamplingConfig(n=2, temperature=[0.7, 1.3], top_p=0.9, max_tokens=6, seed=3)
    batched = engine.generate([chat(p) for p in PROMPTS], sampling)
    for prompt, completions in zip(PROMPTS, batched, strict=True):
        assert engine.generate([chat(prompt)], sampling)[0] == completions


def test_length_sorted_groups_pad_less_than_one_batch(engine: HFEngine) -> None:
    # Short and long prompts interleaved: in groups of 2 sorted by length, the short ones no
    # longer pad up to the long ones.
    prompts = [chat(p) for p in ["Hi", "word " * 40, "Yo", "text " * 40]]
    greedy = SamplingConfig(n=1, temperature=0.0, max_tokens=1)
    lengths = [len(engine.tokenizer(engine.render(c), add_special_tokens=False).input_ids) for c in prompts]
    engine.config = engine.config.model_copy(update={"batch_size": 2})
    engine.token_slots = 0
    grouped = engine.generate(prompts, greedy)
    assert engine.token_slots == 2 * sorted(lengths)[1] + 2 * sorted(lengths)[3]
    assert engine.token_slots < len(prompts) * max(lengths)  # what one padded batch costs
    engine.config = engine.config.model_copy(update={"batch_size": 4})
    assert engine.generate(prompts, greedy) == grouped


def test_a_stopped_row_leaves_the_batch(engine: HFEngine) -> None:
    ids = [engine.tokenizer(engine.render(chat(p)), add_special_tokens=False).input_ids for p in PROMPTS]

    def decode() -> list[list[int]]:
        engine.token_slots = 0
        return engine.decode(ids, [0.0] * 3, [0] * 3, top_p=1.0, max_tokens=8)

    full = decode()
    slots_before = engine.token_slots
    # Make the first prompt's first greedy token a stop token: that row stops after one token.
    engine.stop_ids = engine.stop_ids | {full[0][0]}
    stopped = decode()
    assert stopped[0] == full[0][:1]
    assert engine.token_slots <= slots_before - 7  # at least 7 decode steps without that row
    for before, after in zip(full[1:], stopped[1:], strict=True):
        cut = next((i + 1 for i, token in enumerate(before) if token == full[0][0]), len(before))
        assert after == before[:cut]  # the other rows unchanged (up to the new stop token)


def worker(tiny_model: Path, tmp_path: Path, max_prompt_tokens: int) -> _GenerateWorker:
    config = HFEngineConfig(model=str(tiny_model), max_prompt_tokens=max_prompt_tokens, torch_threads=1)
    sampling = SamplingConfig(n=1, temperature=0.0, max_tokens=4)
    teacher = Teacher.from_spec(
        TeacherSpec(name="tiny", engine=config), BuildContext(store=ModelStore(tmp_path)), "engine"
    )
    return _GenerateWorker("generate", [teacher], sampling, "prompt_messages", "completions")


def table_of(prompts: list[str]) -> pa.Table:
    return prepare_rows(pa.table({"prompt_messages": pa.array([chat(p) for p in prompts], MESSAGES_TYPE)}))


def test_too_long_prompt_fails_only_its_row(tiny_model: Path, tmp_path: Path) -> None:
    out = worker(tiny_model, tmp_path, max_prompt_tokens=30)(table_of(["Hi", "word " * 100, "Bye"]))
    errors = out[ERROR_COLUMN].to_pylist()
    assert errors[0] is None and errors[2] is None
    assert "PromptTooLongError" in errors[1] and "max_prompt_tokens is 30" in errors[1]
    assert out["completions"][1].as_py() is None and len(out["completions"][0].as_py()) == 1


def test_a_failing_batch_is_retried_row_by_row(tiny_model: Path, tmp_path: Path) -> None:
    generate = worker(tiny_model, tmp_path, max_prompt_tokens=64)
    (engine,) = generate.engines
    real = engine.generate

    def flaky(conversations, sampling):  # noqa: ANN001, ANN202 - fails on the poisoned prompt only
        if any(c[0]["content"] == "poison" for c in conversations):
            raise RuntimeError("generation failed")
        return real(conversations, sampling)

    engine.generate = flaky  # type: ignore[method-assign]
    out = generate(table_of(["Hi", "poison", "Bye"]))
    errors = out[ERROR_COLUMN].to_pylist()
    assert errors[0] is None and errors[2] is None and "generation failed" in errors[1]
