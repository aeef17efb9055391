"""The stage-result cache: a re-run job executes only the programs (and scores only the rows) no
run finished before, its dataset equals an uninterrupted run, a cached value gives back the
verdict columns exactly, failures are never cached, and --no-cache runs everything."""

import json
from pathlib import Path

import pyarrow as pa
import pytest
import resources
import yaml

from datagen.job import prepare_job, run_job
from datagen.spec import load_spec
from datagen.stage_cache import StageCacheUser, StageResultCache, process_with_cache, result_inputs
from datagen.stages.base import ERROR_COLUMN, ERROR_COLUMNS, BuildContext, process_table
from datagen.stages.score import ScoreStage, ScoreStageSpec
from datasets_registry import Registry
from model_store import ModelStore
from sandbox.verdict import VERDICT_TYPE, TestResult, Verdict


def with_error_columns(rows: list[dict]) -> pa.Table:
    table = pa.Table.from_pylist(rows)
    for name, arrow_type in ERROR_COLUMNS.items():
        table = table.append_column(name, pa.nulls(table.num_rows, arrow_type))
    return table


# ------------------------------------------------------------------ the cache itself (no Ray)

WRITES = {
    "verdict": pa.string(),
    "verdict_details": VERDICT_TYPE,
    "completion_verdicts": pa.list_(VERDICT_TYPE),
    "reward": pa.float64(),
}


def test_a_cached_result_round_trips_the_verdict_columns_and_failures_are_not_kept(tmp_path: Path) -> None:
    calls: list[str] = []

    def process_rows(rows: list[dict]) -> list[dict | Exception]:
        results: list[dict | Exception] = []
        for row in rows:
            calls.append(row["program"])
            if row["program"] == "broken":
                results.append(RuntimeError("sandbox error: container died"))
                continue
            verdict = Verdict(
                "failed", message="1 of 2", language="python", backend="docker", wall_s=0.1 + 0.2,
                tests=(TestResult("t1", True), TestResult("t2", False, "assert 3 == 4")), trust="isolated",
            )  # fmt: skip
            results.append(
                {
                    "verdict": verdict.status,
                    "verdict_details": verdict.to_row(),
                    "completion_verdicts": [verdict.to_row(), Verdict("timeout").to_row()],
                    "reward": verdict.pass_rate,
                }  # fmt: skip
            )
        return results

    table = with_error_columns([{"program": p} for p in ["a", "b", "broken", "a"]])
    uri = str(tmp_path / "_cache" / "stage_results.lance")

    def run(scope: dict) -> pa.Table:
        cache, stage = StageResultCache(uri, scope, WRITES), StageCacheUser()  # fresh, as a new job's
        process = lambda rows: process_with_cache(stage, cache, rows, process_rows, lambda r: r["program"])  # noqa: E731
        return process_table(table, "execute", ["program"], WRITES, process)

    first = run({"stage": "execute", "limits": 1})
    assert calls == ["a", "b", "broken", "a"]  # a row repeated in a batch is computed each time
    assert "container died" in first[ERROR_COLUMN][2].as_py()
    calls.clear()
    again = run({"stage": "execute", "limits": 1})
    assert calls == ["broken"]  # the failure is retried; the results come from the cache
    assert again.equals(first)  # values and Arrow types, nested verdict structs included
    assert again.schema.field("completion_verdicts").type == pa.list_(VERDICT_TYPE)
    calls.clear()
    run({"stage": "execute", "limits": 2})  # other settings: another key
    assert calls == ["a", "b", "broken", "a"]


def test_a_completion_counts_by_its_text_not_by_whether_it_was_cached() -> None:
    fresh = [{"text": "x = 1", "model": "m", "cached": False, "latency_s": 0.5}]
    reused = [{"text": "x = 1", "model": "m", "cached": True, "latency_s": 0.5}]
    assert result_inputs(fresh) == result_inputs(reused) == ["x = 1"]
    messages = [{"role": "user", "content": "hi"}]  # not a completion: kept whole
    assert result_inputs(messages) == messages


# ------------------------------------------------------------------ execute in a real job

ADD_TESTS = "assert add(1, 2) == 3\n"


@pytest.fixture
def sandbox_image() -> None:
    """The sandbox image must be built (the docker marker checks the engine)."""
    from sandbox.config import SandboxConfig
    from sandbox.image import image_exists

    image = SandboxConfig(backend="docker").resolved_image()
    if not image_exists(image):
        resources.unavailable("docker", f"sandbox image {image} is not built (`assay sandbox build-image`)")


def execute_spec(tmp_path: Path, rows: int, limit: int | None = None) -> Path:
    """A job that executes `rows` distinct programs (every third one passes; the last row has no
    tests: an invalid_input verdict) and registers them."""
    problems = [
        {
            "id": f"p{k:02d}",
            "language": "python",
            "solution": f"def add(a, b):\n    return a + b + {k % 3} + 0 * {k}\n",
            "tests": None if k == rows - 1 else ADD_TESTS,
        }  # fmt: skip
        for k in range(rows)
    ]
    (tmp_path / "programs.jsonl").write_text("\n".join(json.dumps(p) for p in problems))
    spec = {
        "name": "cached-execute",
        "source": {"path": "programs.jsonl"} | ({"limit": limit} if limit else {}),
        "stages": [
            {
                "type": "execute",
                "name": "execute",
                "program": "solution",
                "extract": False,
                "batch_size": 4,
                "sandbox": {"backend": "docker", "pool_size": 2},
            },
        ],  # fmt: skip
        "outputs": [{"dataset": "programs", "kind": "generic"}],
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def run_spec(path: Path, registry: Registry, *, use_cache: bool = True):  # noqa: ANN201 - a JobReport
    job = prepare_job(load_spec(path), registry, ModelStore(path.parent / "models"), use_cache=use_cache)
    return run_job(job, registry, log=lambda _: None)


def registered_rows(registry: Registry, report) -> dict[str, dict]:  # noqa: ANN001
    (output,) = report.outputs
    return {row["id"]: row for row in registry.open(output.ref).to_arrow().to_pylist()}


def without_wall_time(row: dict) -> dict:
    return row | {"verdict_details": row["verdict_details"] | {"wall_s": None}}


@pytest.mark.docker
def test_a_rerun_executes_only_the_programs_not_finished_before(
    tmp_path: Path, registry: Registry, ray_local: None, sandbox_image: None
) -> None:
    rows = 10
    # Uninterrupted, without the cache (`--no-cache`): every program runs, nothing is stored.
    plain = run_spec(execute_spec(tmp_path, rows), registry, use_cache=False)
    assert plain.stage_metrics["execute"]["stage_cache"] == {"hits": 0, "computed": rows}
    assert not (Path(registry.root) / "_cache" / "stage_results.lance").exists()
    # A job that finished only the first half (as a killed one keeps what it finished) ...
    half = run_spec(execute_spec(tmp_path, rows, limit=rows // 2), registry)
    assert half.stage_metrics["execute"]["stage_cache"] == {"hits": 0, "computed": rows // 2}
    # ... then the whole job: only the other half reaches the sandbox.
    rerun = run_spec(execute_spec(tmp_path, rows), registry)
    assert rerun.stage_metrics["execute"]["stage_cache"] == {"hits": rows // 2, "computed": rows - rows // 2}
    expected, got, first = (registered_rows(registry, r) for r in (plain, rerun, half))
    assert sorted(got) == sorted(expected) and len(got) == rows
    assert {i: without_wall_time(r) for i, r in got.items()} == {
        i: without_wall_time(r) for i, r in expected.items()
    }  # the same dataset as the uninterrupted run (a program's wall time aside)
    assert {got[i]["verdict"] for i in got} == {"passed", "failed", "invalid_input"}
    assert all(got[i] == first[i] for i in first)  # the cached half, wall time and all
    assert (
        registry.open(rerun.outputs[0].ref).to_arrow().schema
        == registry.open(plain.outputs[0].ref).to_arrow().schema
    )


# ------------------------------------------------------------------ score with a tiny reward model


@pytest.fixture(scope="module")
def reward_model_folder(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import AutoTokenizer

    from reward_model.model import RewardModel

    folder = tmp_path_factory.mktemp("cache-rm") / "rm"
    RewardModel.from_backbone(tiny_model, seed=3).save(folder, AutoTokenizer.from_pretrained(tiny_model))
    return folder


def test_score_takes_cached_rewards_and_scores_only_new_rows(
    reward_model_folder: Path, tmp_path: Path, ray_local: None
) -> None:
    import ray.data

    def rows(count: int, cached: bool) -> pa.Table:
        return with_error_columns(
            [
                {
                    "prompt_messages": [{"role": "user", "content": f"Question {i}?"}],
                    "completions": [
                        {"text": f"Answer {i}{suffix}.", "model": "m", "cached": cached}
                        for suffix in ("", "!")
                    ],
                }  # fmt: skip
                for i in range(count)
            ]
        )

    def score(table: pa.Table, cache_uri: str | None) -> tuple[list, dict]:
        context = BuildContext(store=ModelStore(tmp_path / "store"), cache_uri=cache_uri)
        spec = ScoreStageSpec(
            name="score", model=str(reward_model_folder), completion="completions", output="rewards",
            per_completion=True, max_length=64, batch_size=3, num_cpus=0.5,
        )  # fmt: skip
        stage = ScoreStage(spec, context)
        out = stage.apply(ray.data.from_arrow(table)).take_all()
        return [row["rewards"] for row in out], stage.metrics(None)["stage_cache"]

    cache_uri = str(tmp_path / "registry" / "_cache" / "llm_calls.lance")
    first, counts = score(rows(4, cached=False), cache_uri)
    assert counts == {"hits": 0, "computed": 4}
    # The same rows with their completions now taken from the LLM cache, plus two new ones.
    again, counts = score(rows(6, cached=True), cache_uri)
    assert counts == {"hits": 4, "computed": 2}
    assert again[:4] == first  # exactly the stored rewards
    assert (tmp_path / "registry" / "_cache" / "stage_results.lance").is_dir()
    plain, counts = score(rows(6, cached=True), None)  # --no-cache: every row is scored
    assert counts == {"hits": 0, "computed": 6}
    assert plain == [pytest.approx(r, abs=1e-4) for r in again]
