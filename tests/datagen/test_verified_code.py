"""Verified code: the selection rules (SFT threshold, AceCoder pairs, reward-model veto, dedupe,
bad rows to the dead letters), real programs in four languages through the execute stage and
the selection on Ray with the Docker sandbox, and the recipe as a whole job (a tiny model writes
no code: every reward is -1.0 and nothing crashes; a problem without tests is a dead letter)."""

import json
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from assay.errors import AssayError
from datagen.job import prepare_job, run_job
from datagen.sources import prepare_rows
from datagen.spec import load_spec
from datagen.stages.base import ERROR_COLUMN, ERROR_STAGE_COLUMN
from datagen.stages.code_select import CodeSelectStage, CodeSelectStageSpec, program_key
from datagen.stages.execute import ExecuteStage, ExecuteStageSpec
from datasets_registry import Registry
from model_store import ModelStore

PROMPT = [{"role": "user", "content": "Write add(a, b)."}]


def verdict(status: str) -> dict:
    return {"status": status, "message": "no tests given" if status == "invalid_input" else ""}


def select_row(rewards: list[float], statuses: list[str] | None = None, **options) -> list[dict]:  # noqa: ANN003
    statuses = statuses or ["no_code" if r == -1.0 else "passed" if r == 1.0 else "failed" for r in rewards]
    rm = options.pop("rm", None)
    spec = CodeSelectStageSpec.model_validate({"type": "code_select"} | options)
    row = {
        "prompt_messages": PROMPT,
        "completions": [
            {"text": f"```python\ndef add(a, b):\n    return {k}\n```"} for k in range(len(rewards))
        ],
        "completion_scores": rewards,
        "completion_verdicts": [verdict(s) for s in statuses],
        "language": "python",
        "rm": rm,
    }
    return CodeSelectStage(spec).select(row)


def pairs(rows: list[dict]) -> list[tuple[float, float]]:
    return [(r["scores"]["chosen_reward"], r["scores"]["rejected_reward"]) for r in rows if r["chosen"]]


def test_acecoder_thresholds_make_the_pairs() -> None:
    assert pairs(select_row([1.0, 0.5, 0.0, -1.0])) == [(1.0, 0.5)]  # rejected must be > 0
    assert pairs(select_row([0.8, 0.4])) == [(0.8, 0.4)]  # margin exactly 0.4 counts
    assert pairs(select_row([0.8, 0.5])) == []  # margin 0.3
    assert pairs(select_row([0.75, 0.25])) == []  # chosen below 0.8
    assert pairs(select_row([1.0, 0.0, -1.0])) == []  # nothing above 0
    assert pairs(select_row([1.0, 0.0, -1.0], rejected_above=None)) == [
        (1.0, -1.0)
    ]  # no-code may be rejected
    two = select_row([1.0, 1.0, 0.25, 0.5], max_pairs_per_prompt=2)
    assert pairs(two) == [(1.0, 0.25), (1.0, 0.5)]


def test_sft_threshold_dedupe_and_row_count() -> None:
    rows = select_row([1.0, 0.5, 1.0], max_sft_per_prompt=3)
    assert sum(r["messages"] is not None for r in rows) == 2 and len(rows) == 2
    assert rows[0]["messages"][:-1] == PROMPT and rows[0]["messages"][-1]["role"] == "assistant"
    assert select_row([0.5, 0.6])[0]["messages"] is None  # default threshold: every test passes
    assert select_row([0.5, 0.6], min_sft_reward=0.5)[0]["messages"][-1]["content"].endswith("return 1\n```")
    (only,) = select_row([0.0, -1.0])  # nothing to keep: one row, for the counts
    assert (only["messages"], only["chosen"]) == (None, None)
    assert only["scores"]["no_code"] == 1 and only["scores"]["execution_worst"] == -1.0
    assert program_key("python", "```python\nx =  1\n```") == program_key("py", "```\nx = 1\n```")
    same_sql = ["```sql\nselect a from t x\n```", "```sql\nSELECT t.a FROM t\n```"]
    assert program_key("sql", same_sql[0]) == program_key("sql", same_sql[1])


def test_reward_model_veto_drops_the_pair_it_disagrees_with() -> None:
    spec = {"rm_scores": "rm"}
    assert pairs(select_row([1.0, 0.5], rm=[0.9, 0.1], **spec)) == [(1.0, 0.5)]
    rows = select_row([1.0, 0.5], rm=[0.1, 0.9], **spec)
    assert pairs(rows) == [] and rows[0]["scores"]["rm_vetoed"] == 1
    # The veto moves on to the next allowed rejected completion.
    assert pairs(select_row([1.0, 0.5, 0.25], rm=[0.5, 0.9, 0.1], **spec)) == [(1.0, 0.25)]


def test_rows_that_cannot_be_judged_fail_with_the_reason() -> None:
    with pytest.raises(ValueError, match="cannot be judged: no tests given"):
        select_row([0.0, 0.0], statuses=["invalid_input", "invalid_input"])
    with pytest.raises(ValueError, match="not one of"):
        select_row([1.0], languages=["cpp"])
    with pytest.raises(ValueError, match="unknown language 'klingon'"):
        CodeSelectStageSpec(type="code_select", languages=["klingon"])
    assert CodeSelectStageSpec(type="code_select", languages=["c++", "py"]).languages == ["cpp", "python"]


SQL_TESTS = json.dumps(
    {
        "setup": "CREATE TABLE t (name TEXT, n INT); INSERT INTO t VALUES ('a', 1), ('b', 2), ('c', 3);",
        "cases": [{"name": "big", "expected": [["c"], ["b"]]}],
    }
)
# (language, tests, completions, expected rewards)
PROBLEMS = [
    ("python", "assert add(1, 2) == 3\nassert add(2, 2) == 4\n",
     ["```python\ndef add(a, b):\n    return a + b\n```", "```python\ndef add(a, b):\n    return 3\n```",
      "I cannot."], [1.0, 0.5, -1.0]),
    ("cpp", "int main() {\n  assert(add(1, 2) == 3);\n  assert(add(0, 0) == 0);\n}\n",
     ["```cpp\nint add(int a, int b) { return a + b; }\n```",
      "```cpp\nint add(int a, int b) { return 3; }\n```"],
     [1.0, 0.5]),
    ("javascript", "assert.strictEqual(add(1, 2), 3);\nassert.strictEqual(add(5, 5), 10);\n",
     ["```js\nfunction add(a, b) { return a + b; }\n```", "```js\nfunction add(a, b) { return a - b; }\n```"],
     [1.0, 0.0]),
    ("sql", SQL_TESTS,
     ["```sql\nSELECT name FROM t WHERE n > 1\n```", "```sql\nselect x.name from t x where x.n > 1;\n```",
      "```sql\nSELECT name FROM t\n```"], [1.0, 1.0, 0.0]),
    ("python", "assert add(1, 2) ==\n", ["```python\ndef add(a, b):\n    return a + b\n```"], None),
]  # fmt: skip


@pytest.mark.slow  # compiles C++ and starts Node: the slowest test here (68 s on the loaded shared machine)
@pytest.mark.docker
def test_execute_then_select_in_four_languages(ray_local) -> None:
    import ray.data

    table = pa.table(
        {
            "id": [f"p{i}" for i in range(len(PROBLEMS))],
            "language": [p[0] for p in PROBLEMS],
            "tests": [p[1] for p in PROBLEMS],
            "completions": [[{"text": t} for t in p[2]] for p in PROBLEMS],
            "prompt_messages": [PROMPT] * len(PROBLEMS),
        }
    )
    execute = ExecuteStage(
        ExecuteStageSpec(type="execute", name="execute", sandbox={"backend": "docker", "pool_size": 2})
    )
    select = CodeSelectStage(
        CodeSelectStageSpec(type="code_select", name="select", max_sft_per_prompt=4, rejected_above=None)
    )
    out = select.apply(execute.apply(ray.data.from_arrow(prepare_rows(table)))).take_all()
    by_id: dict[str, list[dict]] = {}
    for row in out:
        by_id.setdefault(row["id"], []).append(row)
    (broken,) = by_id.pop(f"p{len(PROBLEMS) - 1}")  # tests that do not parse: a dead letter
    assert broken[ERROR_STAGE_COLUMN] == "select" and "do not parse" in broken[ERROR_COLUMN]
    assert broken["completion_verdicts"][0]["status"] == "invalid_input"
    for i, (language, _, _, rewards) in enumerate(PROBLEMS[:-1]):
        rows = by_id[f"p{i}"]
        assert all(row[ERROR_COLUMN] is None for row in rows)
        assert rows[0]["completion_scores"] == rewards, (language, rows[0]["completion_verdicts"])
        sft = [r["messages"] for r in rows if r["messages"]]
        # SQL: the two passing queries are the same query once canonicalised, so one SFT row.
        assert len(sft) == 1, language
        assert len(pairs(rows)) == 1 and pairs(rows)[0][0] == 1.0


def write_spec(tmp_path: Path, model: Path, problems: list[dict], **params: object) -> Path:
    (tmp_path / "problems.jsonl").write_text("\n".join(json.dumps(p) for p in problems))
    (tmp_path / "solve.j2").write_text("{{ prompt }}\nAnswer with one ```{{ language }} code block.\n")
    spec = {
        "name": "tiny-code",
        "source": {"path": "problems.jsonl"},
        "recipe": {
            "name": "verified_code",
            "params": {
                "template": "solve.j2",
                "engine": {"model": str(model), "batch_size": 4, "torch_threads": 1},
                "sampling": {"n": 2, "temperature": [0.7, 1.0], "max_tokens": 8},
                "sandbox": {"backend": "docker", "pool_size": 2},
                **params,
            },
        },
        "outputs": [
            {"dataset": "tiny-code-sft", "kind": "sft"},
            {"dataset": "tiny-code-pref", "kind": "preference"},
            {"dataset": "tiny-code-all", "kind": "generic"},
        ],
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_unknown_language_fails_before_the_job(tmp_path: Path, tiny_model: Path) -> None:
    with pytest.raises(AssayError, match=r"recipe.params.languages.*unknown language 'klingon'"):
        load_spec(write_spec(tmp_path, tiny_model, [], languages=["python", "klingon"]))


@pytest.mark.docker
def test_recipe_job_no_code_is_minus_one_and_no_tests_is_a_dead_letter(
    tmp_path: Path, tiny_model: Path, registry: Registry, ray_local: None
) -> None:
    problems = [
        {"id": "ok", "prompt": "Write add(a, b).", "language": "python", "tests": "assert add(1, 2) == 3\n"},
        {"id": "no-tests", "prompt": "Write sub(a, b).", "language": "python", "tests": None},
    ]
    loaded = load_spec(write_spec(tmp_path, tiny_model, problems, languages=["python"]))
    assert [s.type for s in loaded.spec.stages] == ["render", "generate", "execute", "code_select"]
    report = run_job(
        prepare_job(loaded, registry, ModelStore(tmp_path / "models")), registry, log=lambda _: None
    )
    assert report.rows_in == 2 and report.rows_failed == 1
    (dead,) = registry.open("tiny-code-dead-letter").to_arrow().to_pylist()
    assert dead["id"] == "no-tests" and dead["stage"] == "select" and "no tests given" in dead["error"]
    assert json.loads(dead["row"])["completion_verdicts"][0]["status"] == "invalid_input"
    # The tiny model writes no code: -1.0 each, no SFT row, no pair registered.
    assert sorted(report.skipped) == ["tiny-code-pref", "tiny-code-sft"]
    (ok,) = registry.open("tiny-code-all").to_arrow().to_pylist()
    assert ok["completion_scores"] == [-1.0, -1.0]
    assert [v["status"] for v in ok["completion_verdicts"]] == ["no_code", "no_code"]
    assert ok["scores"]["no_code"] == 2 and ok["messages"] is None and ok["chosen"] is None
    python = report.stage_metrics["select"]["by_language"]["python"]
    assert python["problems"] == 1 and python["no_code_rate"] == 1.0 and python["sft_rows"] == 0
    lineage = registry.open("tiny-code-all").info.lineage
    assert lineage.metrics["stages"]["select"]["by_language"]["python"]["completions"] == 2
