"""The pairwise judge stage on an OpenAI-compatible server (the fake one stands in for a hosted
judge): a panel of two judges, both orders per row, calls through the LLM-call cache (a re-run
asks the server nothing), a judge that fails gives ties with its error kept."""

import sys
from pathlib import Path

import pyarrow as pa

from datagen.stages.base import ERROR_COLUMN, ERROR_COLUMNS, BuildContext
from datagen.stages.judge import PairwiseJudgeStage, PairwiseJudgeStageSpec, _JudgeWorker, reply_text

sys.path.insert(0, str(Path(__file__).parent))
from openai_server import FakeOpenAIServer  # noqa: E402

# The fake server echoes the judge's prompt, so the template itself writes the verdict: the
# plumbing (orders, parsing, panel, cache) is what is tested, not a model's judgement.
TEMPLATE = (
    "{% if 'good' in response_a %}[[A]]{% elif 'good' in response_b %}[[B]]{% else %}[[TIE]]{% endif %}"
)


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def table(rows: list[dict]) -> pa.Table:
    out = pa.Table.from_pylist(rows)
    for name, arrow_type in ERROR_COLUMNS.items():
        out = out.append_column(name, pa.nulls(out.num_rows, arrow_type))
    return out


def close(*workers: _JudgeWorker) -> None:
    for worker in workers:
        for judge in worker.engines:
            judge.engine.close()  # type: ignore[attr-defined] - the openai engine's HTTP session


def test_panel_judges_both_orders_through_the_cache(tmp_path: Path) -> None:
    (tmp_path / "judge.j2").write_text(TEMPLATE)
    rows = [
        {"prompt_messages": user("q1"), "response_a": "good one", "response_b": "meh"},
        {"prompt_messages": user("q2"), "response_a": "meh", "response_b": "good two"},
        {"prompt_messages": user("q3"), "response_a": "same", "response_b": "same"},
        {"prompt_messages": user("q4"), "response_a": None, "response_b": "x"},
    ]  # fmt: skip
    with FakeOpenAIServer(models=["judge-1", "judge-2"], fail_markers={}) as server:
        engine = {"backend": "openai", "base_url": server.base_url, "api_key_env": None, "max_retries": 0}
        spec = PairwiseJudgeStageSpec(
            name="judge",
            template="judge.j2",
            judges=[{"name": "j1", "engine": engine | {"model": "judge-1"}},
                    {"name": "j2", "engine": engine | {"model": "judge-2"}}],
        )  # fmt: skip
        context = BuildContext(spec_path=tmp_path / "spec.yaml", cache_uri=str(tmp_path / "cache.lance"))
        stage = PairwiseJudgeStage(spec, context)
        first, second = _JudgeWorker(stage), _JudgeWorker(stage)
        out = first(table(rows)).to_pylist()
        assert server.requests == 2 * 2 * 3  # two judges, two orders, three good rows
        again = second(table(rows)).to_pylist()
        assert server.requests == 12  # every judge call came from the cache
        close(first, second)
    assert [r["verdict"] for r in out[:3]] == ["a", "b", "tie"]
    assert all(v["consistent"] for v in out[0]["judge_verdicts"])
    assert [v["judge"] for v in out[0]["judge_verdicts"]] == ["j1", "j2"]
    assert out[0]["length_a"] == len("good one") and out[1]["length_b"] == len("good two")
    assert out[3][ERROR_COLUMN] and "not a reply" in out[3][ERROR_COLUMN]
    assert [r["verdict"] for r in again] == [r["verdict"] for r in out]


def test_reply_cells_of_every_shape() -> None:
    assert reply_text([{"text": "first", "model": "m"}, {"text": "second", "model": "m"}]) == "first"
    assert reply_text([{"role": "user", "content": "q"}, {"role": "assistant", "content": "r"}]) == "r"
    assert reply_text({"text": "t"}) == "t"


def test_a_failing_judge_gives_ties_with_the_error_kept(tmp_path: Path) -> None:
    rows = [{"prompt_messages": "BOOM", "response_a": "a", "response_b": "b"}]
    with FakeOpenAIServer(models=["judge"], fail_markers={"BOOM": 500}) as server:
        engine = {"backend": "openai", "base_url": server.base_url, "model": "judge", "api_key_env": None,
                  "max_retries": 0}  # fmt: skip
        stage = PairwiseJudgeStage(PairwiseJudgeStageSpec(judges=[{"engine": engine}]), BuildContext())
        worker = _JudgeWorker(stage)
        (row,) = worker(table(rows)).to_pylist()
        close(worker)
    (verdict,) = row["judge_verdicts"]
    assert row["verdict"] == "tie" and row[ERROR_COLUMN] is None
    assert verdict["first_order"] is None and "500" in verdict["raw_first"]
