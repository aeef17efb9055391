"""HumanEval's dev split, MBPP's validation problems 511-600: recorded and deterministic, apart from
the training problems, posed as HumanEval problems (or refused, saying why), identified apart
from the test split, guarded by the decontamination index; the repeats it leaves out are real
repeats of training problems (checked in the Docker sandbox)."""

from __future__ import annotations

import ast
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import resources
import yaml

from eval_sets import EvalDataError, identity, load_humaneval, texts_for_decontamination
from eval_sets.humaneval_dev import (
    LEFT_OUT,
    SAME_AS_TRAIN,
    SOURCE,
    SPLIT_FILE,
    VALIDATION,
    UnconvertibleProblem,
    mbpp_to_humaneval,
    split_record,
)

ROOT = Path(__file__).resolve().parents[2]
TRAIN = range(601, 975)  # MBPP's train split, what the code recipes generate from


def mbpp_rows(shared_data: Path, tasks: range) -> dict[int, dict]:
    lines = (shared_data / SOURCE).read_text(encoding="utf-8").splitlines()
    rows = (json.loads(line) for line in lines if line.strip())
    return {row["task_id"]: row for row in rows if row["task_id"] in tasks}


def test_split_file_records_exactly_the_converted_problems(shared_data: Path) -> None:
    record = split_record(shared_data)
    assert json.loads(SPLIT_FILE.read_text()) == record == split_record(shared_data)
    assert record["source"] == "mbpp/mbpp.jsonl" and "511-600" in record["rule"]
    assert record["task_ids"] == [task for task in VALIDATION if task not in LEFT_OUT]
    assert len(record["task_ids"]) == 87 and set(LEFT_OUT) == {527, 591, 595}
    assert set(LEFT_OUT) <= set(VALIDATION) and all(LEFT_OUT.values())
    items = load_humaneval(split="dev", data_dir=shared_data)
    assert [item.id for item in items] == [f"MBPP/{task}" for task in record["task_ids"]]
    assert load_humaneval(split="dev", data_dir=shared_data) == items  # the same items every time


def test_every_validation_problem_converts(shared_data: Path) -> None:
    """Nothing of 511-600 is left out for want of a conversion (only the repeats are)."""
    rows = mbpp_rows(shared_data, VALIDATION)
    assert sorted(rows) == list(VALIDATION)
    assert all(mbpp_to_humaneval(row).id == f"MBPP/{task}" for task, row in rows.items())


def mbpp_ranges() -> list[tuple[str, range]]:
    """Each MBPP task range an example pipeline or the mbpp_problems stage's default reads."""
    from datagen.stages.code_problems import MBPP_TRAIN

    ranges = [("mbpp_problems default", range(MBPP_TRAIN[0], MBPP_TRAIN[1] + 1))]
    for path in sorted((ROOT / "examples").rglob("*.yaml")):
        spec = yaml.safe_load(path.read_text())
        if not isinstance(spec, dict) or "mbpp" not in str((spec.get("source") or {}).get("path", "")):
            continue
        stages = [s for s in spec.get("stages", []) if s.get("type") == "mbpp_problems"]
        assert stages, f"{path} reads MBPP without the mbpp_problems stage's task range"
        for stage in stages:
            first, last = stage.get("first_task", MBPP_TRAIN[0]), stage.get("last_task", MBPP_TRAIN[1])
            ranges.append((str(path.relative_to(ROOT)), range(first, last + 1)))
    return ranges


def test_dev_problems_are_apart_from_the_training_problems() -> None:
    ranges = mbpp_ranges()
    assert any(name == "examples/code/mbpp_problems.yaml" for name, _ in ranges)
    recorded = set(json.loads(SPLIT_FILE.read_text())["task_ids"])
    for name, tasks in ranges:
        assert not recorded & set(tasks), f"{name} reads dev problems"
        assert not set(VALIDATION) & set(tasks), f"{name} reads MBPP validation problems"


def test_each_problem_is_posed_as_humaneval_poses_its_own(shared_data: Path) -> None:
    rows = mbpp_rows(shared_data, VALIDATION)
    for item in load_humaneval(split="dev", data_dir=shared_data):
        row = rows[int(item.id.split("/")[1])]
        (function,) = [
            n for n in ast.parse(item.prompt + "    pass\n").body if isinstance(n, ast.FunctionDef)
        ]
        assert function.name == item.entry_point, item.id
        docstring = ast.get_docstring(function) or ""
        assert " ".join(docstring.split()).startswith(" ".join(row["text"].split())), item.id
        assert docstring.endswith(">>> " + row["test_list"][0].strip()), item.id  # one example test
        (check,) = [n for n in ast.parse(item.test).body if isinstance(n, ast.FunctionDef)]
        assert check.name == "check" and [a.arg for a in check.args.args] == ["candidate"]
        asserts = [n for n in check.body if isinstance(n, ast.Assert)]
        assert len(asserts) == len(row["test_list"]), item.id  # every test, against the candidate
        assert ast.unparse(check.body[0]) == f"{item.entry_point} = candidate"
        assert item.canonical_solution == row["code"].replace("\r\n", "\n").replace("\r", "\n")
    sizes = next(item for item in load_humaneval(split="dev", data_dir=shared_data) if item.id == "MBPP/596")
    assert sizes.test.startswith("import sys\n")  # the asserts call sys.getsizeof in the judge


BASE = {"task_id": 1, "text": "Add two numbers.", "test_setup_code": ""}


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"code": "class Pair:\n    pass\n", "test_list": ["assert Pair() is not None"]}, "use Pair"),
        (
            {
                "code": "def a(x):\n    return x\n\ndef b(x):\n    return x\n",
                "test_list": ["assert a(b(1)) == 1"],
            },
            "call 2 functions of the reference \\(a, b\\)",
        ),
        ({"code": "R = 3\ndef f():\n    return R\n", "test_list": ["assert f() == R"]}, "use R"),
        ({"code": "def f():\n    return 1\n", "test_list": ["assert g() == 1"]}, "call 0 functions"),
        ({"code": "def f():\n    return 1\n", "test_list": []}, "no tests"),
        ({"code": "def f(:\n", "test_list": ["assert f() == 1"]}, "does not parse"),
        (
            {"code": "def f():\n    return 1\n", "text": "'''x\"\"\"", "test_list": ["assert f() == 1"]},
            "both kinds of triple quotes",
        ),
    ],
)
def test_problems_that_are_not_one_function_are_refused_saying_why(row: dict, reason: str) -> None:
    with pytest.raises(UnconvertibleProblem, match=f"MBPP task 1: .*{reason}"):
        mbpp_to_humaneval(BASE | row)


def test_helpers_imports_and_backslashes_are_kept() -> None:
    row = BASE | {
        "code": "import re\r\ndef helper(s):\r\n\treturn s\r\n"
        "def words(s):\r\n\treturn re.split('\\n', helper(s))",
        "test_list": ["assert words('a\\nb') == ['a', 'b']"],
        "test_setup_code": "import math",
    }
    item = mbpp_to_humaneval(row)
    assert item.entry_point == "words" and item.canonical_solution.count("\r") == 0
    assert item.prompt.startswith('import re\n\n\ndef words(s):\n    r"""Add two numbers.\n')
    (function,) = [n for n in ast.parse(item.prompt + "    pass\n").body if isinstance(n, ast.FunctionDef)]
    assert ast.get_docstring(function) == "Add two numbers.\n>>> assert words('a\\nb') == ['a', 'b']"
    assert item.test.startswith("import math\n\n\ndef check(candidate):\n    words = candidate")


def test_the_dev_split_has_an_identity_of_its_own(shared_data: Path) -> None:
    test = identity("humaneval", data_dir=shared_data)
    published = hashlib.sha256((shared_data / "humaneval" / "HumanEval.jsonl.gz").read_bytes()).digest()
    assert test == f"humaneval#sha256={hashlib.sha256(published).hexdigest()[:16]}"  # as stored before
    dev = identity("humaneval", split="dev", data_dir=shared_data)
    assert dev.startswith("humaneval:dev#sha256=") and dev == identity("humaneval", split="dev")
    assert identity("ifeval", split="dev", data_dir=shared_data).startswith("ifeval:dev#sha256=")
    assert identity("ifeval", split="dev", data_dir=shared_data) != identity("ifeval", data_dir=shared_data)
    with pytest.raises(EvalDataError, match="'leval' has no dev split"):
        identity("leval", split="dev", data_dir=shared_data)
    with pytest.raises(EvalDataError, match="no split 'train'"):
        load_humaneval(split="train", data_dir=shared_data)


def test_decontamination_guards_the_dev_problems(shared_data: Path) -> None:
    from eval_sets.contamination import default_index, flagged

    texts = dict(texts_for_decontamination(data_dir=shared_data)["humaneval"])
    dev = load_humaneval(split="dev", data_dir=shared_data)
    assert all(texts[item.id] == item.prompt + item.canonical_solution for item in dev)
    index = default_index()
    item = dev[0]
    assert flagged(index.query([item.prompt, item.canonical_solution]), 0.5)[0].item == item.id
    # MBPP's training problems (what the code recipes generate from) reach half of no dev problem
    # (train task 699 did, a repeat of validation task 595: that one is left out).
    train = mbpp_rows(shared_data, TRAIN)
    rows = [[r["text"], r["code"], "\n".join(r["test_list"])] for r in train.values()]
    hits = [m.item for matches in index.query_rows(rows) for m in flagged(matches, 0.5)]
    assert not [hit for hit in hits if hit.startswith("MBPP/")]


@pytest.fixture(scope="module")
def sandbox() -> Iterator:
    """A small warm Docker sandbox (skips loudly, or fails under ASSAY_REQUIRE=docker)."""
    opened = resources.open_docker_sandbox(pool_size=2)
    yield opened
    opened.close()


@pytest.mark.docker
def test_the_left_out_problems_are_exactly_the_train_repeats(sandbox, shared_data: Path) -> None:  # noqa: ANN001
    """Re-run the screen: of the train problems sharing >= 30 % of a validation problem's 8-grams,
    those whose reference passes that problem's converted tests are `SAME_AS_TRAIN`."""
    from eval_sets.contamination import ContaminationIndex
    from sandbox.verify import Job, verify_many

    validation = {task: mbpp_to_humaneval(row) for task, row in mbpp_rows(shared_data, VALIDATION).items()}
    index = ContaminationIndex(
        {"dev": [(str(t), i.prompt) for t, i in validation.items()]
         + [(str(t), i.canonical_solution) for t, i in validation.items()]}
    )  # fmt: skip
    train = mbpp_rows(shared_data, TRAIN)
    pairs = sorted(
        {(int(m.item), task) for task, row in train.items() for text in (row["text"], row["code"])
         for m in index.query(text) if m.overlap >= 0.3}
    )  # fmt: skip
    assert len(pairs) >= len(SAME_AS_TRAIN)
    jobs = []
    for dev, task in pairs:
        item, entry = validation[dev], mbpp_to_humaneval(train[task]).entry_point
        program = f"{mbpp_to_humaneval(train[task]).canonical_solution}\n{item.entry_point} = {entry}\n"
        jobs.append(Job("python", program, f"{item.test}\ncheck({item.entry_point})\n", extract=False))
    verdicts = verify_many(sandbox, jobs, workers=2)
    assert not [v.message for v in verdicts if v.status == "sandbox_error"]
    solved = {dev: task for (dev, task), v in zip(pairs, verdicts, strict=True) if v.status == "passed"}
    assert solved == SAME_AS_TRAIN
