"""The execute stage with real Ray and the real Docker sandbox: verdict columns per row, one
verdict and reward per completion, bad rows get invalid_input verdicts, a sandbox failure is a
dead letter, and the cluster-wide semaphore bounds executions across actors."""

import pyarrow as pa
import pytest

from datagen.sources import prepare_rows
from datagen.stages.base import ERROR_COLUMN, ERROR_STAGE_COLUMN
from datagen.stages.execute import ExecuteStage, ExecuteStageSpec, _ExecuteWorker
from sandbox.config import SandboxConfig
from sandbox.execution import ExecResult
from sandbox.verdict import Verdict

ADD_TESTS = "assert add(1, 2) == 3\nassert add(2, 2) == 4\n"


def stage(**options) -> ExecuteStage:  # noqa: ANN003
    spec = ExecuteStageSpec.model_validate(
        {"type": "execute", "name": "execute", "sandbox": {"backend": "docker", "pool_size": 2}} | options
    )
    return ExecuteStage(spec)


@pytest.mark.docker
def test_execute_stage_writes_verdicts_and_bounds_concurrency(ray_local) -> None:
    import ray
    import ray.data

    # (language, solution, tests, expected verdict, pass rate); every case twice, each row with its id.
    cases = [
        ("python", "def add(a, b):\n    return a + b\n", ADD_TESTS, "passed", 1.0),
        ("python", "def add(a, b):\n    return a - b\n", ADD_TESTS, "failed", 0.0),
        ("cpp", "int add(int a, int b) { return a + b; }\n", "int main() {\n  assert(add(1, 2) == 3);\n}\n",
         "passed", 1.0),
        ("klingon", "add = +", ADD_TESTS, "invalid_input", 0.0),
        ("python", "def add(a, b):\n    return a + b\n", None, "invalid_input", 0.0),
        ("python", "def add(a, b)\n", ADD_TESTS, "compile_error", 0.0),
    ] * 2  # fmt: skip
    rows = pa.table(
        {
            "id": [f"row-{i}" for i in range(len(cases))],
            "language": [case[0] for case in cases],
            "solution": [case[1] for case in cases],
            "tests": [case[2] for case in cases],
        }
    )
    # Each actor keeps 2 executions in flight (its pool size); the stage allows 1 at a time.
    execute = stage(
        name="execute-rows", program="solution", extract=False, actors=2, batch_size=4, max_concurrency=1
    )
    out = execute.apply(ray.data.from_arrow(prepare_rows(rows)).repartition(3)).take_all()
    by_id = {row["id"]: row for row in out}
    assert len(out) == 12 and sorted(by_id) == sorted(rows["id"].to_pylist())
    assert all(row[ERROR_COLUMN] is None for row in out)
    for i, (language, solution, tests, verdict, pass_rate) in enumerate(cases):
        row = by_id[f"row-{i}"]
        assert (row["language"], row["solution"], row["tests"]) == (language, solution, tests)
        expected_reward = None if verdict == "invalid_input" else pass_rate
        assert (row["verdict"], row["pass_rate"], row["reward"]) == (verdict, pass_rate, expected_reward), (
            i,
            row["verdict_details"],
        )
        details = row["verdict_details"]
        assert details["status"] == verdict
        if verdict in ("passed", "failed"):  # every test ran and has its own result
            expected_test = verdict == "passed"
            assert [t["passed"] for t in details["tests"]] == [expected_test] * details["total"]
            assert details["total"] == (2 if language == "python" else 1)
    stats = execute.concurrency_stats()
    assert stats == {"permits": 1, "in_flight": 0, "peak": 1}


@pytest.mark.docker
def test_execute_stage_scores_every_completion(ray_local) -> None:
    import ray.data

    completions = [
        {"text": "```python\ndef add(a, b):\n    return a + b\n```"},
        {"text": "```python\ndef add(a, b):\n    return 3\n```"},
        {"text": "I don't know."},
    ]
    rows = pa.table({"language": ["python"], "tests": [ADD_TESTS], "completions": [completions]})
    out = stage(name="execute-completions").apply(ray.data.from_arrow(prepare_rows(rows))).take_all()
    (row,) = out
    assert row["completion_scores"] == [1.0, 0.5, -1.0]
    assert [v["status"] for v in row["completion_verdicts"]] == ["passed", "failed", "no_code"]


class _Broken:
    backend = "docker"

    def execute(self, request):  # noqa: ANN001, ANN201
        return ExecResult((), "docker", error="container died")

    def close(self) -> None:
        pass


class _NoLimit:
    class acquire:  # noqa: N801 - mimics a Ray actor method
        @staticmethod
        def remote() -> None:
            return None

    release = acquire


def test_a_sandbox_failure_sends_the_row_to_the_dead_letters(monkeypatch: pytest.MonkeyPatch) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import ray

    monkeypatch.setattr(ray, "get", lambda ref: ref)
    worker = _ExecuteWorker.__new__(_ExecuteWorker)
    worker.stage = stage(program="solution", extract=False)
    worker.sandbox, worker.semaphore, worker.pool = _Broken(), _NoLimit(), ThreadPoolExecutor(2)
    table = prepare_rows(
        pa.table({"language": ["python"], "solution": ["def add(a, b): ..."], "tests": [ADD_TESTS]})
    )
    out = worker(table).to_pylist()[0]
    assert out[ERROR_STAGE_COLUMN] == "execute" and "container died" in out[ERROR_COLUMN]
    assert out["verdict"] is None and out["verdict_details"] is None


def test_spec_needs_one_input_and_checks_the_sandbox_config() -> None:
    assert ExecuteStageSpec(type="execute").completions == "completions"
    with pytest.raises(ValueError, match="not both"):
        ExecuteStageSpec(type="execute", program="a", completions="b")
    with pytest.raises(ValueError, match="sandbox.pool_sizes"):
        ExecuteStageSpec.model_validate({"type": "execute", "sandbox": {"pool_sizes": 2}})
    assert isinstance(Verdict("passed").reward, float)
    assert isinstance(stage(program="x").spec.sandbox, SandboxConfig)
