"""`assay train rm` registers a reward model with lineage; `assay eval rm` reports accuracy and
calibration; bad input fails in one line with exit code 2."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import yaml
from rm_fixtures import pair_rows, synthetic_pairs

from datasets_registry import Registry
from datasets_registry.kinds import MESSAGES_TYPE

SCHEMA = pa.schema(
    [("id", pa.string()), ("prompt", MESSAGES_TYPE), ("chosen", MESSAGES_TYPE), ("rejected", MESSAGES_TYPE),
     ("label", pa.float64()), ("stage", pa.int64())]
)  # fmt: skip


def assay(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).parent / "assay"), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def test_train_rm_registers_lineage_and_eval_reports(tiny_model: Path, tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry")
    rows = pair_rows(synthetic_pairs(12, stage=1) + synthetic_pairs(24, stage=2))
    registry.write("tiny-rm-pairs", pa.Table.from_pylist(rows, schema=SCHEMA), kind="rm_pairs")
    held_out = pair_rows(synthetic_pairs(30)[24:])
    registry.write("tiny-rm-test", pa.Table.from_pylist(held_out, schema=SCHEMA), kind="rm_pairs")
    env = {**os.environ, "ASSAY_REGISTRY": str(tmp_path / "registry"), "ASSAY_HOME": str(tmp_path / "home")}
    config = tmp_path / "rm.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": str(tiny_model),
                "datasets": ["tiny-rm-pairs@1"],
                "eval_dataset": "tiny-rm-test@1",
                "output": "tiny-rm",
                "max_length": 64,
                "row_length": 128,
                "stage1": {"learning_rate": 3e-3, "pairs_per_step": 8, "micro_batch_pairs": 4},
                "stage2": {"learning_rate": 3e-3, "pairs_per_step": 8, "micro_batch_pairs": 4, "epochs": 4},
            }
        )
    )
    result = assay(["train", "rm", str(config), "--set", "stage2.warmup_ratio=0.0"], env)
    assert result.returncode == 0, result.stderr
    assert "registered reward model tiny-rm" in result.stdout
    record = json.loads((tmp_path / "home" / "models" / "tiny-rm" / "assay_model.json").read_text())
    assert record["kind"] == "reward_model"
    lineage = record["lineage"]
    assert lineage["datasets"] == ["tiny-rm-pairs@1"] and lineage["base_model"].startswith(str(tiny_model))
    assert lineage["config"]["stage2"]["warmup_ratio"] == 0.0  # the override is recorded
    metrics = lineage["metrics"]
    assert metrics["stage1"]["pairs"] == 12 and metrics["stage2"]["pairs"] == 24
    assert metrics["stage2"]["last_loss"] < metrics["stage2"]["first_loss"]
    assert metrics["eval"]["loss"] < metrics["eval_before"]["loss"] and metrics["eval"]["accuracy"] == 1.0
    assert metrics["eval"]["dataset"] == "tiny-rm-test@1"

    shown = assay(["eval", "rm", "tiny-rm", "--dataset", "tiny-rm-test@1"], env)
    assert shown.returncode == 0, shown.stderr
    assert "accuracy 100.0%" in shown.stdout and "ECE" in shown.stdout and "mean label" in shown.stdout
    assert "scoring 6/6 pairs" in shown.stdout and "done in" in shown.stdout  # the progress line, piped
    assert "longer-wins" in shown.stdout and "reward model trusted: 100.0 %" in shown.stdout  # trust check
    as_json = json.loads(
        assay(["eval", "rm", "tiny-rm", "--dataset", "tiny-rm-test@1", "--json"], env).stdout
    )
    assert as_json["pairs"] == 6 and as_json["accuracy"] == 1.0 and 0 <= as_json["ece"] <= 1
    assert sum(b["count"] for b in as_json["bins"]) == 12  # each pair in both orders
    trust = as_json["trust"]
    assert trust["accuracy"] == {"value": 1.0, "stderr": 0.0, "n": 6} and trust["trusted"] is True
    assert trust["longer_wins"]["n"] == 6 and trust["length_unit"] == "characters"

    # the trained model relabels as an ensemble member: stage-1 pairs get its probabilities
    config2 = tmp_path / "rm2.yaml"
    config2.write_text(config.read_text() + "ensemble: [tiny-rm]\n")
    relabelled = assay(
        ["train", "rm", str(config2), "--set", "output=tiny-rm-2", "--set", "eval_before=false"], env
    )
    assert relabelled.returncode == 0, relabelled.stderr
    record = json.loads((tmp_path / "home" / "models" / "tiny-rm-2" / "assay_model.json").read_text())
    ensemble = record["lineage"]["metrics"]["ensemble"]
    assert ensemble["members"] == 1 and ensemble["relabelled"] >= 12 and ensemble["agreement_stage2"] == 1.0


def test_bad_input_fails_in_one_line(tiny_model: Path, tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry")
    rows = [
        {k: v for k, v in row.items() if k not in ("label", "stage")} for row in pair_rows(synthetic_pairs(2))
    ]
    table = pa.Table.from_pylist(
        rows, schema=pa.schema([f for f in SCHEMA if f.name not in ("label", "stage")])
    )
    registry.write("prefs", table, kind="preference")
    env = {**os.environ, "ASSAY_REGISTRY": str(tmp_path / "registry"), "ASSAY_HOME": str(tmp_path / "home")}
    config = tmp_path / "rm.yaml"
    config.write_text(yaml.safe_dump({"model": str(tiny_model), "datasets": ["prefs@1"]}))
    wrong_kind = assay(["train", "rm", str(config)], env)
    assert_one_line_error(wrong_kind, "trains on 'rm_pairs'")
    config.write_text(yaml.safe_dump({"model": str(tiny_model), "datasets": ["prefs@1"], "fill_target": 2}))
    bad_field = assay(["train", "rm", str(config)], env)
    assert_one_line_error(bad_field, "fill_target")
    assert str(config) in bad_field.stderr
    missing = assay(["eval", "rm", "no-such-model", "--dataset", "prefs@1"], env)
    assert_one_line_error(missing, "no-such-model")


def assert_one_line_error(result: subprocess.CompletedProcess, needle: str) -> None:
    """Exit code 2, and stderr is one line saying what is wrong: no traceback, no log noise."""
    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert needle in lines[0] and "Traceback" not in result.stderr
