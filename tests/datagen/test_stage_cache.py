"""The stage-result cache: a re-run job executes only the programs (and scores only the rows) no
run finished before, its dataset equals an uninterrupted run, a cached value gives back the
verdict columns exactly, failures and timed-out runs are never cached, --no-cache runs
everything, changed tests or limits or code are other keys, and renamed read columns are not."""

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
import resources
from execute_jobs import table_rows, without_wall_time, write_execute_pipeline

from datagen.job import cache_uri, prepare_job, run_job
from datagen.spec import load_spec
from datagen.stage_cache import (
    StageCacheUser,
    StageResultCache,
    Uncached,
    process_with_cache,
    result_inputs,
    stage_results_uri,
)
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
            if row["program"] == "slow":  # a run timed out: written, not stored
                timeout = Verdict("timeout")
                results.append(
                    Uncached(verdict=timeout.status, verdict_details=timeout.to_row(),
                             completion_verdicts=[timeout.to_row()], reward=timeout.pass_rate)
                )  # fmt: skip
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

    table = with_error_columns([{"program": p} for p in ["a", "b", "broken", "a", "slow"]])
    uri = str(tmp_path / "_cache" / "stage_results.lance")

    def run(scope: dict) -> pa.Table:
        cache, stage = StageResultCache(uri, scope, WRITES), StageCacheUser()  # fresh, as a new job's
        process = lambda rows: process_with_cache(stage, cache, rows, process_rows, lambda r: r["program"])  # noqa: E731
        return process_table(table, "execute", ["program"], WRITES, process)

    first = run({"stage": "execute", "limits": 1})
    assert calls == ["a", "b", "broken", "a", "slow"]  # a row repeated in a batch is computed each time
    assert "container died" in first[ERROR_COLUMN][2].as_py()
    assert first["verdict"][4].as_py() == "timeout"
    calls.clear()
    again = run({"stage": "execute", "limits": 1})
    assert calls == ["broken", "slow"]  # the failure and the timeout are retried; the rest is cached
    assert again.equals(first)  # values and Arrow types, nested verdict structs included
    assert again.schema.field("completion_verdicts").type == pa.list_(VERDICT_TYPE)
    calls.clear()
    run({"stage": "execute", "limits": 2})  # other settings: another key
    assert calls == ["a", "b", "broken", "a", "slow"]


def test_a_completion_counts_by_its_text_not_by_whether_it_was_cached() -> None:
    fresh = [{"text": "x = 1", "model": "m", "cached": False, "latency_s": 0.5}]
    reused = [{"text": "x = 1", "model": "m", "cached": True, "latency_s": 0.5}]
    assert result_inputs(fresh) == result_inputs(reused) == ["x = 1"]
    messages = [{"role": "user", "content": "hi"}]  # not a completion: kept whole
    assert result_inputs(messages) == messages


# ------------------------------------------------------------------ execute in a real job

ADD_TESTS = "assert add(1, 2) == 3\n"
CHANGED_TESTS = "assert add(2, 2) == 4\n"
SLEEPER = "import time\ntime.sleep(3)\ndef add(a, b):\n    return a + b\n"


@pytest.fixture
def sandbox_image() -> None:
    """The sandbox image must be built (the docker marker checks the engine)."""
    from sandbox.config import SandboxConfig
    from sandbox.image import image_exists

    image = SandboxConfig(backend="docker").resolved_image()
    if not image_exists(image):
        resources.unavailable("docker", f"sandbox image {image} is not built (`assay sandbox build-image`)")


def execute_spec(
    tmp_path: Path,
    rows: int,
    limit: int | None = None,
    *,
    changed: int = 0,
    sleeper: bool = False,
    wall_timeout_s: float | None = None,
) -> Path:
    """A job that executes `rows` distinct programs (every third one passes; the last row has no
    tests: an invalid_input verdict) and registers them; the first `changed` rows get other
    tests, `sleeper` adds a program that sleeps 3 s, `wall_timeout_s` sets the sandbox's limit."""
    problems = [
        {
            "id": f"p{k:02d}",
            "language": "python",
            "solution": f"def add(a, b):\n    return a + b + {k % 3} + 0 * {k}\n",
            "tests": None if k == rows - 1 else CHANGED_TESTS if k < changed else ADD_TESTS,
        }  # fmt: skip
        for k in range(rows)
    ]
    if sleeper:
        problems.append({"id": "sleeper", "language": "python", "solution": SLEEPER, "tests": ADD_TESTS})
    sandbox: dict = {"backend": "docker", "pool_size": 2}
    if wall_timeout_s is not None:
        sandbox["limits"] = {"wall_timeout_s": wall_timeout_s}
    return write_execute_pipeline(
        tmp_path, problems, name="cached-execute", output="programs", sandbox=sandbox, limit=limit
    )


def run_spec(path: Path, registry: Registry, *, use_cache: bool = True):  # noqa: ANN201 - a JobReport
    job = prepare_job(load_spec(path), registry, ModelStore(path.parent / "models"), use_cache=use_cache)
    return run_job(job, registry, log=lambda _: None)


def registered_rows(registry: Registry, report) -> dict[str, dict]:  # noqa: ANN001
    (output,) = report.outputs
    return {row["id"]: row for row in registry.open(output.ref).to_arrow().to_pylist()}


def stored_results(registry: Registry) -> int:
    """Rows the registry's stage-result cache holds."""
    return table_rows(stage_results_uri(cache_uri(registry)))


@pytest.mark.docker
def test_a_rerun_executes_only_the_programs_not_finished_before(
    tmp_path: Path, registry: Registry, ray_local: None, sandbox_image: None
) -> None:
    rows, changed = 10, 2
    # Uninterrupted, without the cache (`--no-cache`): every program runs, nothing is stored.
    plain = run_spec(execute_spec(tmp_path, rows, changed=changed), registry, use_cache=False)
    assert plain.stage_metrics["execute"]["stage_cache"] == {"hits": 0, "computed": rows}
    assert not (Path(registry.root) / "_cache" / "stage_results.lance").exists()
    # A job that finished only the first half (as a killed one keeps what it finished) ...
    half = run_spec(execute_spec(tmp_path, rows, limit=rows // 2), registry)
    assert half.stage_metrics["execute"]["stage_cache"] == {"hits": 0, "computed": rows // 2}
    # ... then the whole job, whose first rows' tests changed meanwhile: only the other half and
    # the rows with changed tests reach the sandbox.
    rerun = run_spec(execute_spec(tmp_path, rows, changed=changed), registry)
    assert rerun.stage_metrics["execute"]["stage_cache"] == {
        "hits": rows // 2 - changed,
        "computed": rows - rows // 2 + changed,
    }
    expected, got, first = (registered_rows(registry, r) for r in (plain, rerun, half))
    assert sorted(got) == sorted(expected) and len(got) == rows
    assert {i: without_wall_time(r) for i, r in got.items()} == {
        i: without_wall_time(r) for i, r in expected.items()
    }  # the same dataset as the uninterrupted run (a program's wall time aside)
    assert {got[i]["verdict"] for i in got} == {"passed", "failed", "invalid_input"}
    assert got["p00"]["tests"] == CHANGED_TESTS and first["p00"]["tests"] == ADD_TESTS
    assert all(got[i] == first[i] for i in sorted(first)[changed:])  # the cached rows, wall time and all
    assert (
        registry.open(rerun.outputs[0].ref).to_arrow().schema
        == registry.open(plain.outputs[0].ref).to_arrow().schema
    )
    # Another wall timeout is another sandbox: every row runs again. The sleeper times out at 1 s
    # and is not stored (on a loaded machine another program may time out too: not stored either).
    stored = stored_results(registry)
    timed = run_spec(execute_spec(tmp_path, rows, changed=changed, sleeper=True, wall_timeout_s=1), registry)
    assert timed.stage_metrics["execute"]["stage_cache"] == {"hits": 0, "computed": rows + 1}
    verdicts = {i: r["verdict"] for i, r in registered_rows(registry, timed).items()}
    assert verdicts["sleeper"] == "timeout"
    assert stored_results(registry) == stored + sum(v != "timeout" for v in verdicts.values())


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


# ------------------------------------------------------------------ what a key holds (real stages)


@pytest.fixture(scope="module")
def docker_sandbox() -> Iterator:
    box = resources.open_docker_sandbox(pool_size=1)  # skips loudly without Docker
    yield box
    box.close()


def stage_key(stage, sandbox, row: dict, uri: str = "unused.lance") -> str:  # noqa: ANN001
    """The key the stage's worker gives `row`: the real `cache_scope` and `cache_inputs`."""
    return StageResultCache(uri, stage.cache_scope(sandbox), stage.writes).key(stage.cache_inputs(row))


@pytest.mark.docker
def test_renamed_read_columns_keep_the_key_and_result_settings_change_it(docker_sandbox) -> None:  # noqa: ANN001
    from datagen.stages.execute import ExecuteStage, ExecuteStageSpec
    from datagen.stages.synthesize_tests import SynthesizeTestsStage, SynthesizeTestsStageSpec
    from judges.code.mutation import OPERATORS

    def execute(**fields) -> ExecuteStage:  # noqa: ANN003
        return ExecuteStage(ExecuteStageSpec(type="execute", **{"extract": False} | fields))

    row = {"language": "python", "solution": "def add(a, b):\n    return a + b\n", "tests": ADD_TESTS}
    renamed = {"lang": row["language"], "code": row["solution"], "checks": row["tests"]}
    base = stage_key(execute(program="solution"), docker_sandbox, row)
    moved = execute(program="code", language="lang", tests="checks")
    assert stage_key(moved, docker_sandbox, renamed) == base  # the same values under other names
    # Knobs that change only the speed keep the key ...
    fast = execute(program="solution", max_concurrency=3, threads=1, actors=2, batch_size=1, name="other")
    assert stage_key(fast, docker_sandbox, row) == base
    # ... what changes a verdict does not: the values, extraction, limits, the written columns.
    assert stage_key(execute(program="solution"), docker_sandbox, row | {"tests": CHANGED_TESTS}) != base
    assert stage_key(execute(program="solution", extract=True), docker_sandbox, row) != base
    limited = execute(program="solution", sandbox={"limits": {"wall_timeout_s": 1}})
    assert stage_key(limited, docker_sandbox, row) != base
    listed = execute(completions="solution")  # a list of completions: other written columns
    assert stage_key(listed, docker_sandbox, row | {"solution": [row["solution"]]}) != base

    def synthesize(**fields) -> SynthesizeTestsStage:  # noqa: ANN003
        return SynthesizeTestsStage(SynthesizeTestsStageSpec(type="synthesize_tests", **fields))

    problem = {"completions": [{"text": "t", "cached": False}], "solution": "x = 1\n", "language": "python"}
    default = stage_key(synthesize(), docker_sandbox, problem)
    assert stage_key(synthesize(operators=list(OPERATORS)), docker_sandbox, problem) == default
    assert stage_key(synthesize(operators=["return_none"]), docker_sandbox, problem) != default


@pytest.mark.docker
def test_a_change_to_a_stages_code_changes_its_keys(docker_sandbox, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    import datagen.stage_cache
    from datagen.stages.execute import ExecuteStage, ExecuteStageSpec

    stage = ExecuteStage(ExecuteStageSpec(type="execute", program="solution"))
    row = {"language": "python", "solution": "x = 1\n", "tests": ADD_TESTS}
    before = stage_key(stage, docker_sandbox, row)
    real = datagen.stage_cache.source_digest
    assert "sandbox.verify" in stage.result_modules and "sandbox.harness" in stage.result_modules
    monkeypatch.setattr(datagen.stage_cache, "source_digest", lambda modules: real(modules) + "-edited")
    assert stage_key(stage, docker_sandbox, row) != before


def test_the_source_digest_follows_a_modules_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from datagen.stage_cache import source_digest

    (tmp_path / "judged_pkg").mkdir()
    (tmp_path / "judged_pkg" / "__init__.py").write_text("")
    (tmp_path / "judged_pkg" / "harness.js").write_text("console.log(1)\n")
    (tmp_path / "judged_alone.py").write_text("LIMIT = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    names = ("judged_alone", "judged_pkg")
    first = source_digest(names)
    assert source_digest(names) == first
    (tmp_path / "judged_pkg" / "harness.js").write_text("console.log(2)\n")  # a package's non-Python file
    source_digest.cache_clear()  # read once per process: a new process reads the new bytes
    second = source_digest(names)
    (tmp_path / "judged_alone.py").write_text("LIMIT = 2\n")
    source_digest.cache_clear()
    assert len({first, second, source_digest(names)}) == 3


def test_every_cached_stage_names_its_read_columns_and_real_modules() -> None:
    import datagen.stages  # noqa: F401 - registers every stage
    from datagen.stage_cache import source_digest
    from datagen.stages.registry import registered_stages
    from datagen.stages.sandbox_worker import SandboxStage

    cached = [cls for cls in registered_stages().values() if issubclass(cls, StageCacheUser)]
    assert {cls.__name__ for cls in cached} >= {
        "ExecuteStage", "SqlReferenceStage", "SynthesizeTestsStage", "TranslationCheckStage", "ScoreStage",
    }  # fmt: skip
    for cls in cached:
        assert "metrics" not in cls.__dict__, cls  # `metrics` adds the cache's counts: not overridden
        assert source_digest((cls.__module__, *cls.result_modules))  # every module exists
        if issubclass(cls, SandboxStage):
            stage = cls(cls.spec_class(type=cls.spec_class.model_fields["type"].default))
            names = {getattr(stage.spec, field) for field in cls.read_fields} - {None}
            assert names == set(stage.reads), cls  # every read column's field, and only those
    with pytest.raises(TypeError, match="result_metrics"):

        class Forgetful(StageCacheUser):
            def metrics(self, result):  # noqa: ANN001, ANN202
                return {}


@pytest.mark.docker
def test_translation_check_takes_cached_rows_and_reports_its_hits(
    tmp_path: Path, ray_local: None, sandbox_image: None
) -> None:
    import ray.data

    from datagen.stages.translation import TranslationCheckStage, TranslationCheckStageSpec

    reply = "```javascript\nfunction f() { return 1; }\n```\n```javascript\nassert(f() === 1);\n```"
    table = with_error_columns(
        [{"completions": [{"text": text, "cached": False}], "prompt": "Write f.",
          "target_language": "javascript", "target_entry_point": "f"} for text in ("no code", reply)]
    )  # fmt: skip
    spec = TranslationCheckStageSpec(
        type="translation_check", name="translate", sandbox={"backend": "docker"}
    )
    context = BuildContext(cache_uri=str(tmp_path / "registry" / "_cache" / "llm_calls.lance"))

    def check() -> tuple[list[dict], dict]:
        stage = TranslationCheckStage(spec, context)
        out = stage.apply(ray.data.from_arrow(table)).take_all()
        return [row["translation"] for row in out], stage.metrics(ray.data.from_items(out))

    first, metrics = check()
    assert metrics["stage_cache"] == {"hits": 0, "computed": 2} and metrics["rows"] == 2
    assert [(t["kept"], t["reason"]) for t in first] == [(False, "no_code"), (True, None)]
    again, metrics = check()
    assert metrics["stage_cache"] == {"hits": 2, "computed": 0} and again == first
