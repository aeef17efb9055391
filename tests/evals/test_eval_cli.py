"""`assay eval model` end to end on a tiny random model: it stores a run that `models show` shows."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from evals.run import evaluate_model
from model_store import ModelLineage, ModelStore

ASSAY = str(Path(sys.executable).parent / "assay")


def assay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ASSAY, *args], capture_output=True, text=True, env=os.environ.copy(), timeout=300)


def test_eval_model_stores_runs_that_models_show_lists(
    tiny_model: Path, tmp_path: Path, shared_data: Path
) -> None:
    store = ModelStore(Path(os.environ["ASSAY_HOME"]) / "models")
    shutil.copytree(tiny_model, tmp_path / "copy")
    store.register("tiny", tmp_path / "copy", kind="sft", lineage=ModelLineage())
    args = [
        "eval",
        "model",
        "tiny",
        "--suite",
        "ifeval",
        "--suite",
        "xstest",
        "--limit",
        "2",
        "--max-tokens",
        "8",
    ]

    shown = assay(*args)
    assert shown.returncode == 0, shown.stderr
    assert "stored 2 runs with tiny" in shown.stderr
    assert "Loading weights" not in shown.stderr  # transformers' bar: the command has its own display
    lines = shown.stdout.splitlines()  # piped: a tab-separated table
    assert lines[0] == "suite\tmetric\tvalue ± stderr\tn"
    assert any(line.startswith("ifeval\tprompt_strict\t") and line.endswith("\t2") for line in lines)
    assert any(line.startswith("xstest\tbalance\t") for line in lines)

    again = assay(*args, "--json")  # the same calls again: all from the LLM-call cache
    assert again.returncode == 0, again.stderr
    runs = json.loads(again.stdout)["runs"]
    assert [r["generation"]["cache_hits"] for r in runs] == [2, 2]
    assert runs[0]["settings"]["engine"]["backend"] == "hf" and runs[0]["settings"]["limit"] == 2

    record = json.loads(assay("models", "show", "tiny", "--json").stdout)
    assert [e["suite"] for e in record["evaluations"]] == ["ifeval", "xstest"]
    assert record["evaluations"][0]["id"] == runs[0]["id"]  # the newest run of each suite
    table = assay("models", "show", "tiny").stdout
    assert "ifeval\tinstruction_loose\t" in table and "xstest\tover_refusal\t" in table


def test_an_unknown_suite_is_one_line_and_exit_2(tmp_path: Path) -> None:
    failed = assay("eval", "model", "smollm2-135m-instruct", "--suite", "nope")
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines() == [
        "error: no evaluation suite 'nope'; suites and groups: " + failed.stderr.split("groups: ")[1].strip()
    ]
    assert "ifeval" in failed.stderr and "core" in failed.stderr


def test_an_unstored_folder_is_evaluated_but_not_stored(
    tiny_model: Path, tmp_path: Path, shared_data: Path
) -> None:
    store = ModelStore(tmp_path / "models")
    (run,) = evaluate_model(str(tiny_model), ["xstest"], limit=2, max_tokens=4, store=store, cache_uri="")
    assert run.stored is None and run.result.metric("balance").n == 2
    assert not list(tiny_model.glob("assay_eval*")) and not store.root.exists()
