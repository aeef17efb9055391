"""Scripts can read assay's output: every listing and show command's `--json` parses, `data
head`/`sample` print JSON lines (whole with `--full`, some columns with `--columns`), tables are
tab-separated when piped, `--version` answers, and `models show --tree` walks a merge down to the
datasets its inputs were trained on."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from datasets_registry import Registry
from datasets_registry.kinds import MESSAGES_TYPE
from datasets_registry.transfer import with_ids
from model_store import ModelStore
from trainer.config import TrainConfig
from trainer.run import prepare_training, run_training

ASSAY = Path(sys.executable).parent / "assay"


def assay(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"ASSAY_HOME": str(home), "ASSAY_REGISTRY": str(home / "registry")}
    return subprocess.run([str(ASSAY), *args], capture_output=True, text=True, env=env, timeout=120)


def ok(*args: str, home: Path) -> str:
    done = assay(*args, home=home)
    assert done.returncode == 0, done.stderr
    return done.stdout


def conversation(question: str, answer: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    """A registry with two SFT datasets, an expert trained on each, and their merge."""
    home = tmp_path_factory.mktemp("home")
    registry = Registry(home / "registry")
    long_answer = "word " * 400
    for name, answers in (
        ("math-sft", ["Four.", "Six.", long_answer]),
        ("chat-sft", ["Hi!", "Bye.", "Hey."]),
    ):
        rows = [conversation(f"q{i}", a) for i, a in enumerate(answers)]
        table = pa.table({"messages": pa.array(rows, MESSAGES_TYPE), "language": ["en"] * 3})
        registry.write(name, with_ids(table), kind="sft")
    store = ModelStore(home / "models")
    for expert, dataset in (("math-expert", "math-sft@1"), ("chat-expert", "chat-sft@1")):
        config = TrainConfig(
            model=str(tiny_model), dataset=dataset, output=expert, max_steps=1, micro_batch_size=3
        )
        run_training(prepare_training(config, registry, store), store, log=lambda _: None)
    halves = [{"model": name, "parameters": {"weight": 0.5}} for name in ("math-expert", "chat-expert")]
    merge = {"merge_method": "linear", "models": halves, "output": "ignored-by-name"}
    (home / "soup.yaml").write_text(yaml.safe_dump(merge))
    ok("merge", str(home / "soup.yaml"), "--name", "soup", home=home)
    return home


def test_version_and_json_of_every_listing(home: Path) -> None:
    assert ok("--version", home=home).startswith("assay ")
    datasets = json.loads(ok("data", "list", "--json", home=home))
    assert {d["name"] for d in datasets} == {"math-sft", "chat-sft"} and datasets[0]["uri"].endswith(".lance")
    shown = json.loads(ok("data", "show", "math-sft", "--json", home=home))
    assert (
        shown["rows"] == 3
        and shown["languages"] == {"en": 3}
        and shown["schema"]["messages"].startswith("list")
    )
    assert shown["uri"] == datasets[[d["name"] for d in datasets].index("math-sft")]["uri"]
    stats = json.loads(ok("data", "stats", "math-sft", "--json", home=home))
    assert stats["row_count"] == 3 and stats["languages"] == {"en": 3}
    diff = json.loads(ok("data", "diff", "math-sft@1", "chat-sft@1", "--json", home=home))
    assert diff["added"]["count"] == 3 and diff["removed"]["count"] == 3
    lineage = json.loads(ok("data", "lineage", "math-sft", "--json", home=home))
    assert lineage["ref"] == "math-sft@1"
    models = json.loads(ok("models", "list", "--json", home=home))
    assert {m["name"] for m in models["stored"]} == {"math-expert", "chat-expert", "soup"}
    record = json.loads(ok("models", "show", "soup", "--json", home=home))
    assert record["kind"] == "merge" and record["path"].endswith("soup")
    assert set(record["lineage"]["datasets"]) == {"math-sft@1", "chat-sft@1"}  # the inputs' datasets
    sandbox = json.loads(ok("sandbox", "status", "--json", home=home))
    assert set(sandbox) >= {"engine", "image", "image_present", "bwrap", "containers"}


def test_models_show_tree_reaches_both_datasets(home: Path) -> None:
    tree = json.loads(ok("models", "show", "soup", "--tree", "--json", home=home))
    assert tree["merge"]["method"] == "linear" and tree["merge"]["weights"] == [0.5, 0.5]
    inputs = {node["model"]: node for node in tree["inputs"]}
    assert set(inputs) == {"math-expert", "chat-expert"}
    assert [d["ref"] for d in inputs["math-expert"]["datasets"]] == ["math-sft@1"]
    assert [d["ref"] for d in inputs["chat-expert"]["datasets"]] == ["chat-sft@1"]
    assert inputs["math-expert"]["config"]["max_steps"] == 1
    assert inputs["math-expert"]["inputs"][0]["stored"] is False  # the tiny base is a plain folder
    shown = ok("models", "show", "soup", "--tree", home=home)
    assert "math-sft@1" in shown and "chat-sft@1" in shown and "chat-expert" in shown


def test_rows_print_as_json_lines(home: Path) -> None:
    lines = ok("data", "head", "math-sft", "-n", "3", home=home).splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) == 3 and len(rows[2]["messages"][1]["content"]) == len("word " * 400)  # piped: whole
    only = [
        json.loads(line)
        for line in ok("data", "head", "math-sft", "--columns", "id,language", home=home).splitlines()
    ]
    assert all(set(row) == {"id", "language"} for row in only)
    sampled = ok("data", "sample", "math-sft", "-n", "2", "--full", "--columns", "messages", home=home)
    assert len(sampled.splitlines()) == 2
    bad = assay("data", "head", "math-sft", "--columns", "nope", home=home)
    assert bad.returncode == 2 and "no column nope" in bad.stderr


def test_piped_tables_are_tab_separated(home: Path) -> None:
    header, *rows = ok("data", "list", home=home).splitlines()
    assert header.split("\t") == ["name", "latest", "versions", "kind", "rows", "created", "tags"]
    assert sorted(row.split("\t")[0] for row in rows) == ["chat-sft", "math-sft"]
    assert ok("models", "list", home=home).splitlines()[0].split("\t")[:2] == ["name", "kind"]


def test_filter_errors_say_what_failed_without_library_paths(home: Path) -> None:
    bad = assay("data", "sample", "math-sft", "--where", "nonexistent = 1", home=home)
    assert bad.returncode == 2 and "filter 'nonexistent = 1'" in bad.stderr and "No field named" in bad.stderr
    assert ".rs:" not in bad.stderr and "_rowaddr" not in bad.stderr


def test_checkpoints_are_readable_by_others(home: Path) -> None:
    for expert in ("math-expert", "soup"):
        for file in (home / "models" / expert).iterdir():
            assert file.stat().st_mode & 0o044 == 0o044, file


def test_training_and_merging_report_progress_in_a_pipe(home: Path, tiny_model: Path) -> None:
    config = {"model": str(tiny_model), "dataset": "chat-sft@1", "output": "progress-expert", "max_steps": 3,
              "micro_batch_size": 1}  # fmt: skip
    (home / "train.yaml").write_text(yaml.safe_dump(config))
    lines = ok("train", "sft", str(home / "train.yaml"), home=home).splitlines()
    (final,) = [line for line in lines if line.startswith("[") and "steps" in line]
    assert (
        re.search(r"sft (\d+)/\1 steps", final)
        and "tok/s" in final
        and "loss " in final
        and "done in" in final
    )
    merge = {"method": "linear", "models": [{"model": "math-expert", "weight": 0.5},
             {"model": "progress-expert", "weight": 0.5}]}  # fmt: skip
    (home / "merge.yaml").write_text(yaml.safe_dump(merge))
    merged = ok("merge", str(home / "merge.yaml"), "--name", "soup-2", home=home)
    assert any(line.startswith("[") and "soup-2" in line and "MiB" in line for line in merged.splitlines())
