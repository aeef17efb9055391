"""`assay eval winrate` end to end on tiny random models (two causal LMs and a reward model): the
report's counts, a model against itself at exactly 0.5, the run stored with the model, and every
bad input refused in one line with exit 2 before a model loads."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from datasets_registry import Registry
from datasets_registry.kinds import MESSAGES_TYPE
from evals.results import load_runs
from model_store import ModelLineage, ModelStore

ASSAY = str(Path(sys.executable).parent / "assay")


def assay(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed `assay` command (its entry point turns user errors into exit 2)."""
    command = [ASSAY, "--registry", str(tmp_path / "registry"), "eval", "winrate", *args]
    return subprocess.run(command, capture_output=True, text=True, env=os.environ.copy(), timeout=300)


@pytest.fixture(scope="module")
def other_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny_model with its final norm negated. A tiny random model repeats the last prompt token
    ("\n", stripped: an empty reply); this one answers with other tokens, a non-empty reply."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tmp_path_factory.mktemp("other") / "other-lm"
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    with torch.no_grad():
        model.model.norm.weight.mul_(-1)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def reward_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A reward model on the tiny backbone (random head), saved as an HF folder."""
    from transformers import AutoTokenizer

    from reward_model.model import RewardModel

    folder = tmp_path_factory.mktemp("tiny-rm") / "rm"
    RewardModel.from_backbone(tiny_model, seed=1).save(folder, AutoTokenizer.from_pretrained(tiny_model))
    return folder


def register_prompts(tmp_path: Path) -> None:
    """`chats@1` (sft, the reply after the last user turn is not part of the prompt) and `plain@1`
    (text, no prompt column)."""
    registry = Registry(tmp_path / "registry")
    rows = [
        {"id": f"c{i}", "messages": [{"role": "user", "content": f"Write about the sea, part {i}."},
                                     {"role": "assistant", "content": "A reply the models never see."}]}
        for i in range(5)
    ]  # fmt: skip
    schema = pa.schema([("id", pa.string()), ("messages", MESSAGES_TYPE)])
    registry.write("chats", pa.Table.from_pylist(rows, schema=schema), kind="sft")
    registry.write("plain", pa.table({"text": ["no prompt here"]}), kind="text")


def test_win_rate_of_a_stored_model_is_reported_and_stored(
    tiny_model: Path, other_model: Path, reward_model: Path, tmp_path: Path, shared_data: Path
) -> None:
    store = ModelStore(Path(os.environ["ASSAY_HOME"]) / "models")
    shutil.copytree(tiny_model, tmp_path / "copy")
    store.register("tiny", tmp_path / "copy", kind="sft", lineage=ModelLineage())

    shown = assay(tmp_path, "tiny", "--reference", str(other_model), "--reward-model", str(reward_model),
                  "--limit", "3", "--max-tokens", "4")  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()  # piped: a tab-separated table
    assert lines[0] == "metric\tvalue ± stderr\tn"
    assert [line.split("\t")[0] for line in lines[1:4]] == ["win_rate", "win_rate_lc", "wins / ties / losses"]
    assert lines[4].startswith(f"mean length (characters) of tiny / {other_model}\t")
    assert "stored the win rate as suite winrate-vs-other-lm with tiny" in shown.stderr

    (run,) = load_runs(store, "tiny")
    assert run.suite == "winrate-vs-other-lm" and run.eval_set.startswith("ifeval#sha256=")
    win_rate = run.metric("win_rate")
    counts = run.settings["counts"]
    assert win_rate.n == 3 and counts["wins"] + counts["ties"] + counts["losses"] == 3
    assert 0 <= win_rate.value <= 1 and 0 <= run.metric("win_rate_lc").value <= 1
    # different replies (empty vs not) get different rewards: no ties, and the lengths differ
    assert counts["ties"] == 0 and counts["mean_length_a"] == 0 < counts["mean_length_b"]
    assert lines[1] == f"win_rate\t{win_rate.value:.3f} ± {win_rate.stderr:.3f}\t3"
    assert lines[3] == f"wins / ties / losses\t{counts['wins']} / {counts['ties']} / {counts['losses']}\t3"
    assert run.settings["limit"] == 3 and run.settings["reference"]["model"] == str(other_model)
    assert [item["id"].startswith("m-ifeval-") for item in run.items()] == [True] * 3

    record = json.loads(subprocess.run([ASSAY, "models", "show", "tiny", "--json"], capture_output=True,
                                       text=True, check=True).stdout)  # fmt: skip
    assert [e["id"] for e in record["evaluations"]] == [run.id]


def test_a_model_against_itself_ties_every_prompt(
    other_model: Path, reward_model: Path, tmp_path: Path
) -> None:
    register_prompts(tmp_path)  # other_model: its greedy replies are not empty
    args = [str(other_model), "--reference", str(other_model), "--reward-model", str(reward_model),
            "--prompts", "chats@1", "--limit", "3", "--max-tokens", "4"]  # fmt: skip

    done = assay(tmp_path, *args, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["wins"], report["ties"], report["losses"], report["n"]) == (0, 3, 0, 3)
    assert report["win_rate"] == 0.5 and report["length_controlled"] == 0.5 and report["stderr"] == 0
    assert report["mean_length_a"] == report["mean_length_b"] > 0
    assert report["prompts"] == "chats@1" and report["suite"] == "winrate-vs-other-lm"
    assert not report["stored"] and report["run_id"] is None


@pytest.mark.parametrize(
    ("which", "expected"),
    [
        ("model", "MODEL: model 'nope' is neither"),
        ("reward", "--reward-model: model 'nope'"),
        ("not-rm", "is not a reward model"),
        ("dataset", "no dataset named 'missing'"),
        ("no-prompt", "plain@1 (kind text) has no prompt column"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    which: str, expected: str, tiny_model: Path, reward_model: Path, tmp_path: Path
) -> None:
    register_prompts(tmp_path)
    model, reference, rm, prompts = str(tiny_model), str(tiny_model), str(reward_model), "chats@1"
    model = "nope" if which == "model" else model
    rm = {"reward": "nope", "not-rm": str(tiny_model)}.get(which, rm)
    prompts = {"dataset": "missing@1", "no-prompt": "plain@1"}.get(which, prompts)

    failed = assay(tmp_path, model, "--reference", reference, "--reward-model", rm, "--prompts", prompts)
    assert failed.returncode == 2, failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1 and expected in failed.stderr
    assert failed.stdout == ""
