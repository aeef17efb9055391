"""Code translation: replies split into solution and tests, broken variants, the check stage on
hand-written translations of real MBPP train problems in the Docker sandbox (kept; a failing
solution and vacuous tests dropped with their reason; a reply without code gives a reason, not a
crash), an unknown target refused when the spec loads, and the recipe as a Ray job with the tiny
model (it writes no code: every row dropped, counts in the lineage)."""

import json
import sys
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from assay.errors import AssayError
from datagen.job import prepare_job, run_job
from datagen.sources import prepare_rows
from datagen.spec import load_spec
from datagen.stages.base import ERROR_COLUMN
from datagen.stages.code_select import explode_rows
from datagen.stages.translation import (
    TranslationTargetsStage,
    TranslationTargetsStageSpec,
)
from datagen.stages.translation_targets import (
    TARGETS,
    cpp_broken_variants,
    javascript_broken_variants,
    parse_reply,
    restate_prompt,
)
from datasets_registry import Registry
from model_store import ModelStore

sys.path.insert(0, str(Path(__file__).parent))  # openai_server, the fake OpenAI-compatible server

ROOT = Path(__file__).resolve().parents[2]
CPP, JS = TARGETS["cpp"], TARGETS["javascript"]

# Hand-written translations of MBPP train tasks 603 (JavaScript), 608 and 604 (C++).
LUDIC_JS = """```javascript
function get_ludic(n) {
  const ludics = [];
  for (let i = 1; i <= n; i++) ludics.push(i);
  let index = 1;
  while (index !== ludics.length) {
    const first = ludics[index];
    let remove = index + first;
    while (remove < ludics.length) {
      ludics.splice(remove, 1);
      remove = remove + first - 1;
    }
    index += 1;
  }
  return ludics;
}
```
```javascript
const assert = require("assert");
assert.deepStrictEqual(get_ludic(10), [1, 2, 3, 5, 7]);
assert.deepStrictEqual(get_ludic(25), [1, 2, 3, 5, 7, 11, 13, 17, 23, 25]);
assert.deepStrictEqual(get_ludic(45), [1, 2, 3, 5, 7, 11, 13, 17, 23, 25, 29, 37, 41, 43]);
```"""
BELL_CPP = """#include <vector>
int bell_Number(int n) {
    std::vector<std::vector<long long>> bell(n + 1, std::vector<long long>(n + 1, 0));
    bell[0][0] = 1;
    for (int i = 1; i <= n; i++) {
        bell[i][0] = bell[i - 1][i - 1];
        for (int j = 1; j <= i; j++) bell[i][j] = bell[i - 1][j - 1] + bell[i][j - 1];
    }
    return bell[n][0];
}
"""
BELL_TESTS = """#include <cassert>
int main() {
    assert(bell_Number(2) == 2);
    assert(bell_Number(3) == 5);
    assert(bell_Number(4) == 15);
}
"""
REVERSE_CPP = """```cpp
#include <sstream>
#include <string>
#include <vector>
std::string reverse_words(const std::string& s) {
    std::istringstream in(s);
    std::vector<std::string> words;
    std::string word;
    while (in >> word) words.push_back(word);
    std::string out;
    for (auto it = words.rbegin(); it != words.rend(); ++it) {
        if (!out.empty()) out += " ";
        out += *it;
    }
    return out;
}
```
```cpp
#include <cassert>
#include <string>
int main() {
    assert(reverse_words("python program") == "program python");
    assert(reverse_words("java language") == "language java");
    assert(reverse_words("indian man") == "man indian");
}
```"""


def cpp_reply(solution: str, tests: str) -> str:
    return f"Solution:\n```cpp\n{solution}```\nTests:\n```cpp\n{tests}```\n"


def test_replies_split_into_solution_and_tests() -> None:
    parsed = parse_reply(cpp_reply(BELL_CPP, BELL_TESTS), CPP)
    assert parsed.reason is None and parsed.solution == BELL_CPP and parsed.tests == BELL_TESTS
    swapped = parse_reply(f"```c++\n{BELL_TESTS}```\n```c++\n{BELL_CPP}```", CPP)  # tests first
    assert swapped.solution == BELL_CPP and swapped.tests == BELL_TESTS
    assert parse_reply("I would loop over the rows.", CPP).reason == "no_code"
    assert parse_reply(f"```cpp\n{BELL_CPP}```", CPP).reason == "one_block"
    assert parse_reply(f"```cpp\n{BELL_CPP}```\n```cpp\nint x = 1;\n```", CPP).reason == "no_tests"
    assert parse_reply(LUDIC_JS, JS).reason is None
    assert parse_reply(LUDIC_JS, CPP).reason == "no_code"  # javascript blocks are not C++


def test_broken_variants_replace_the_entry_function() -> None:
    zero, throwing = cpp_broken_variants(BELL_CPP, "bell_Number")
    assert "int bell_Number(int n) { return {}; }" in zero and "bell[0][0]" not in zero
    assert "int bell_Number(int n) { throw 0;\n    std::vector" in throwing and zero.startswith(
        "#include <vector>\n"
    )
    void = cpp_broken_variants(
        "#include <vector>\nvoid fill(std::vector<int>& v) {\n  v.push_back(1);\n}\n", "fill"
    )
    assert "void fill(std::vector<int>& v) { }" in void[0]
    overloads = "int f(int a) { return a; }\n// f(x) here is a comment\n"
    overloads += "long f(long a) noexcept { return a + f(1); }\n"
    assert cpp_broken_variants(overloads, "f")[0].count("{ return {}; }") == 2
    assert cpp_broken_variants("int g(int a) { return a; }\n", "f") == []
    (js,) = javascript_broken_variants("const add = (a, b) => a + b;\n", "add")
    assert js.startswith("let add = (a, b)") and js.endswith(";add = function () { return undefined; };\n")
    assert javascript_broken_variants("function add(a, b) { return a + b; }", "add")
    assert javascript_broken_variants("function sub(a, b) { return a - b; }", "add") == []


def test_targets_fan_out_and_prompt_restated() -> None:
    spec = TranslationTargetsStageSpec(type="translation_targets", languages=["js", "c++"])
    assert spec.languages == ["javascript", "cpp"]
    stage = TranslationTargetsStage(spec)
    table = prepare_rows(
        pa.table(
            {
                "id": ["bell", "not-python"],
                "language": ["python", "go"],
                "solution": ["def bell_Number(n):\n    return n\n", "func f() {}"],
                "tests": ["assert bell_Number(2) == 2\n", "func main() {}"],
            }
        )
    )
    out = explode_rows(table, stage.name, stage.reads, stage.writes, stage.targets_of).to_pylist()
    assert [(r["id"], r["target_language"]) for r in out] == [
        ("bell", "javascript"),
        ("bell", "cpp"),
        ("not-python", None),
    ]
    assert (
        out[0]["target_entry_point"] == "bell_Number" and "bell_Number" in out[1]["translation_instructions"]
    )
    assert "starts from Python problems" in out[2][ERROR_COLUMN]
    prompt = (
        "Write a python function to find nth bell number.\nYour code should pass this test:\n"
        "assert bell_Number(2) == 2"
    )
    assert restate_prompt(prompt, CPP, BELL_TESTS, "bell_Number") == (
        "Write a C++ function to find nth bell number.\nYour code should pass these tests:\n"
        + BELL_TESTS.strip()
    )
    assert restate_prompt("Reverse words.", JS, None, "reverse_words").endswith(
        "Write the solution in JavaScript.\nThe function is called `reverse_words`."
    )


@pytest.mark.parametrize("languages", [["javascript", "klingon"], ["go"]])
def test_unknown_target_language_fails_before_the_job(
    tmp_path: Path, tiny_model: Path, languages: list
) -> None:
    with pytest.raises(
        AssayError, match=r"recipe.params.languages.*(unknown language 'klingon'|not a translation target)"
    ):
        load_spec(write_spec(tmp_path, tiny_model, [], languages=languages))


def test_example_spec_loads() -> None:
    loaded = load_spec(ROOT / "examples" / "code" / "translate_code.yaml")
    stages = loaded.spec.stages
    assert [s.type for s in stages] == ["translation_targets", "render", "generate", "translation_check"]
    assert (
        stages[0].languages == ["javascript", "cpp"] and loaded.spec.source.dataset == "mbpp-train-problems"
    )
    assert [o.kind for o in loaded.spec.outputs] == ["code", "generic"]


def mbpp(shared_data: Path, task_id: int) -> dict:
    assert 601 <= task_id <= 974  # MBPP's train split only
    for line in (shared_data / "mbpp" / "mbpp.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["task_id"] == task_id:
            return row
    raise AssertionError(task_id)


# One reply per MBPP problem and target language (the fake server echoes the rendered prompt, so
# the template below is the reply): three good translations, one reply without code, one
# translation whose solution fails its tests, and one whose tests check nothing.
BELL_JS_VACUOUS = """```javascript
function bell_Number(n) {
  const bell = Array.from({ length: n + 1 }, () => new Array(n + 1).fill(0));
  bell[0][0] = 1;
  for (let i = 1; i <= n; i++) {
    bell[i][0] = bell[i - 1][i - 1];
    for (let j = 1; j <= i; j++) bell[i][j] = bell[i - 1][j - 1] + bell[i][j - 1];
  }
  return bell[n][0];
}
```
```javascript
const assert = require("assert");
assert(true);
assert.strictEqual(typeof bell_Number, "function");
```"""
REVERSE_JS_WRONG = (
    "```javascript\nfunction reverse_words(s) {\n  return s;\n}\n```\n```javascript\n"
    'const assert = require("assert");\n'
    'assert.strictEqual(reverse_words("python program"), "program python");\n'
    'assert.strictEqual(reverse_words("java language"), "language java");\n```'
)
REPLIES = {  # task: (javascript reply, cpp reply)
    603: (LUDIC_JS, "I cannot translate this."),
    604: (REVERSE_JS_WRONG, REVERSE_CPP),
    # `auto`: the zero-value variant does not compile, the throwing one does.
    608: (BELL_JS_VACUOUS, cpp_reply(BELL_CPP.replace("int bell_Number", "auto bell_Number"), BELL_TESTS)),
}
ECHO_TEMPLATE = (
    "Here is the translation.\n"
    '{% if target_language == "cpp" %}{{ reply_cpp }}{% else %}{{ reply_javascript }}{% endif %}\nDone.\n'
)


@pytest.mark.docker
def test_recipe_job_keeps_good_translations_and_drops_bad_ones(
    tmp_path: Path, registry: Registry, ray_local: None, shared_data: Path
) -> None:
    from openai_server import FakeOpenAIServer

    problems = []
    for task, (javascript, cpp) in REPLIES.items():
        row = mbpp(shared_data, task)
        shown = row["test_list"][0]  # as the mbpp_problems stage writes the prompt
        problems.append({
            "id": f"mbpp-{task}", "prompt": f"{row['text']}\nYour code should pass this test:\n{shown}",
            "language": "python", "tests": "\n".join(row["test_list"]) + "\n", "solution": row["code"],
            "reply_javascript": javascript, "reply_cpp": cpp,
        })  # fmt: skip
    (tmp_path / "echo.j2").write_text(ECHO_TEMPLATE)
    with FakeOpenAIServer(models=["translator"]) as server:
        engine = {"backend": "openai", "base_url": server.base_url, "model": "translator",
                  "api_key_env": None, "max_retries": 0}  # fmt: skip
        loaded = load_spec(
            write_spec(
                tmp_path,
                None,
                problems,
                languages=["javascript", "cpp"],
                template="echo.j2",
                engine=engine,
                sampling={"n": 1, "temperature": 0.7, "max_tokens": 4000},
            )
        )
        report = run_job(
            prepare_job(loaded, registry, ModelStore(tmp_path / "models")), registry, log=lambda _: None
        )
    assert report.rows_in == 6 and report.rows_failed == 0
    kept = {
        (r["source_id"], r["language"]): r for r in registry.open("tiny-translated").to_arrow().to_pylist()
    }
    assert sorted(kept) == [("mbpp-603", "javascript"), ("mbpp-604", "cpp"), ("mbpp-608", "cpp")]
    for row in kept.values():
        assert row["verdict"] == "passed" and row["pass_rate"] == 1.0
        assert row["prompt"].endswith(row["tests"].strip()) and "should pass this test" not in row["prompt"]
    bell = kept[("mbpp-608", "cpp")]
    assert bell["prompt"].startswith("Write a C++ function to find nth bell number.\n")
    assert bell["solution"].startswith("#include <vector>\nauto bell_Number(int n)")
    assert "assert(bell_Number(4) == 15);" in bell["tests"]
    attempts = {
        (r["id"], r["translation"]["target"]): r["translation"]
        for r in registry.open("tiny-translate-all").to_arrow().to_pylist()
    }
    assert attempts[("mbpp-608", "cpp")]["broken_status"] == "failed"  # the throwing variant
    expected = {
        ("mbpp-603", "cpp"): ("no_code", "no C++ code block"),
        ("mbpp-604", "javascript"): ("solution_fails", "failed, 0/2 tests passed; first failure: line 2:"),
        ("mbpp-608", "javascript"): ("broken_not_caught", "they check nothing"),
    }
    for key, (reason, detail) in expected.items():
        assert (attempts[key]["reason"], attempts[key]["kept"]) == (reason, False)
        assert detail in attempts[key]["detail"], attempts[key]
    metrics = registry.open("tiny-translated").info.lineage.metrics["stages"]["translate"]
    assert metrics["rows"] == 6 and metrics["kept"] == 3
    steps = ("generated", "parsed", "solution_passes", "catches_broken")
    javascript, cpp = metrics["by_language"]["javascript"], metrics["by_language"]["cpp"]
    assert [javascript[s] for s in steps] == [3, 3, 2, 1] and [cpp[s] for s in steps] == [3, 2, 2, 2]
    assert javascript["reasons"] == {"solution_fails": 1, "broken_not_caught": 1}
    assert cpp["reasons"] == {"no_code": 1} and cpp["survival"]["parsed_of_generated"] == 0.6667


def write_spec(tmp_path: Path, model: Path | None, problems: list[dict], **params: object) -> Path:
    (tmp_path / "problems.jsonl").write_text("\n".join(json.dumps(p) for p in problems))
    spec = {
        "name": "tiny-translate",
        "source": {"path": "problems.jsonl"},
        "recipe": {
            "name": "translate_code",
            "params": {
                "engine": {"model": str(model), "batch_size": 4, "torch_threads": 1},  # or params' engine
                "sampling": {"n": 1, "temperature": 0.7, "max_tokens": 8},
                "sandbox": {"backend": "docker", "pool_size": 2},
                **params,
            },
        },
        "outputs": [
            {"dataset": "tiny-translated", "kind": "code"},
            {"dataset": "tiny-translate-all", "kind": "generic"},
        ],
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.docker
@pytest.mark.slow  # 23 s; the scripted job above runs the same stages, model calls included
def test_recipe_job_with_the_tiny_model_drops_every_row(
    tmp_path: Path, tiny_model: Path, registry: Registry, ray_local: None
) -> None:
    problems = [
        {"id": "bell", "prompt": "Write a python function to find nth bell number.", "language": "python",
         "tests": "assert bell_Number(2) == 2\nassert bell_Number(3) == 5\n",
         "solution": "def bell_Number(n):\n    return [1, 1, 2, 5, 15][n]\n"},
        {"id": "cpp-already", "prompt": "Add.", "language": "cpp", "tests": "int main() {}",
         "solution": "int add(int a, int b) { return a + b; }"},
    ]  # fmt: skip
    loaded = load_spec(write_spec(tmp_path, tiny_model, problems, languages=["javascript", "cpp"]))
    report = run_job(
        prepare_job(loaded, registry, ModelStore(tmp_path / "models")), registry, log=lambda _: None
    )
    assert report.rows_in == 3 and report.rows_failed == 1  # bell in two languages, the C++ row dead
    (dead,) = registry.open("tiny-translate-dead-letter").to_arrow().to_pylist()
    assert dead["id"] == "cpp-already" and dead["stage"] == "targets" and "Python" in dead["error"]
    assert report.skipped == ["tiny-translated"]  # the tiny model writes no translation
    rows = registry.open("tiny-translate-all").to_arrow().to_pylist()
    assert sorted(r["translation"]["target"] for r in rows) == ["cpp", "javascript"]
    assert all(not r["translation"]["kept"] and r["translation"]["reason"] for r in rows)
    assert all(r["prompt"] is r["tests"] is r["solution"] is None for r in rows)  # the Python ones nulled
    metrics = registry.open("tiny-translate-all").info.lineage.metrics["stages"]["translate"]
    assert metrics["rows"] == 2 and metrics["generated"] == 2 and metrics["kept"] == 0
    assert set(metrics["by_language"]) == {"cpp", "javascript"}
